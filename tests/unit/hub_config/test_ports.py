"""The ports `gpulab up` listens on: the pure plan, clashes within it, and the check against
real sockets (issue 15: two hubs on one machine)."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
from traitlets.config import Config

from gpulab.hub_config.services.config import listening_services
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.ports import Listener, clash, planned_listeners, unavailable_port
from gpulab.hub_config.settings import deep_merge
from gpulab.hub_config.typed_settings import Settings
from gpulab.hub_config.up import clear_stale_proxy
from tests.support.ports import free_port_block
from tests.support.settings import typed_settings


def settings(**sections) -> Settings:
    return typed_settings(deep_merge({"hub": {"data_dir": "/srv/gpulab/data"}}, sections))


def plan(values: Settings) -> list[Listener]:
    return planned_listeners(values, listening_services(apply_config(values, Config())))


def test_defaults_plan_the_public_api_hub_service_and_ssh_ports():
    assert [(item.what, item.address, item.port, item.source) for item in plan(settings())] == [
        ("the public proxy", "0.0.0.0", 8000, "hub.port"),
        ("the proxy's API", "127.0.0.1", 8099, "proxy.api_port"),
        ("the hub", "127.0.0.1", 8081, "hub.internal_port"),
        ("the projects service", "127.0.0.1", 8082, "hub.internal_port + 1"),
        ("the mlflow service", "127.0.0.1", 8083, "hub.internal_port + 2"),
        ("the scheduler service", "127.0.0.1", 8084, "hub.internal_port + 3"),
        ("the ssh service", "127.0.0.1", 8085, "hub.internal_port + 4"),
        ("the usage service", "127.0.0.1", 8087, "hub.internal_port + 6"),
        ("SSH", "0.0.0.0", 2222, "ssh.port"),
    ]


def test_the_plan_follows_the_settings():
    values = settings(hub={"ip": "127.0.0.1", "internal_port": 9100, "service_host": "gpulab-hub"},
                      mlflow={"enabled": False}, ssh={"enabled": False})
    ports = {item.what: (item.address, item.port) for item in plan(values)}
    assert ports["the public proxy"] == ("127.0.0.1", 8000)
    assert ports["the scheduler service"] == ("0.0.0.0", 9103)  # reached by host name: every interface
    assert "the mlflow service" not in ports and "SSH" not in ports
    assert "the culler service" not in ports  # it listens on no port
    # a proxy that runs apart (the Helm chart's) listens elsewhere
    apart = plan(settings(proxy={"kind": "configurable-http-proxy", "api_url": "http://proxy-api:8001"}))
    assert {item.what for item in apart}.isdisjoint({"the public proxy", "the proxy's API"})


def test_two_of_gpulabs_own_ports_on_one_port_clash_before_any_socket():
    message = unavailable_port(plan(settings(ssh={"port": 8084})))
    assert message == ("port 8084 is wanted both for the scheduler service (hub.internal_port + 3) and for SSH "
                       "(ssh.port); set ssh.port to another port")
    # one port on two different addresses is no clash; on a wildcard it is
    apart = [Listener("a", "127.0.0.1", 8000, "hub.port"), Listener("b", "127.0.0.2", 8000, "ssh.port")]
    assert clash(apart) is None
    assert "port 8000 is wanted both for a" in clash([apart[0], Listener("b", "0.0.0.0", 8000, "ssh.port")])


def test_a_port_held_by_a_process_names_it_and_the_setting():
    port = free_port_block(2)
    holder = subprocess.Popen([sys.executable, "-c", f"""
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen(); print("ready", flush=True); time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        api = Listener("the proxy's API", "127.0.0.1", port, "proxy.api_port")
        message = unavailable_port([Listener("the hub", "127.0.0.1", port + 1, "hub.internal_port"), api])
        assert message.startswith(f"cannot listen for the proxy's API on 127.0.0.1:{port} (proxy.api_port): "
                                  "address already in use, by ")
        assert message.endswith("; set proxy.api_port to a free port")
        if os.geteuid() == 0 or psutil.Process(holder.pid).username() == psutil.Process().username():
            assert f"pid {holder.pid} ({sys.executable} -c" in message
        # every interface includes 127.0.0.1; a service names the block of ports to move
        service = Listener("the mlflow service", "0.0.0.0", port, "hub.internal_port", 2)
        message = unavailable_port([Listener("the hub", "127.0.0.1", port - 2, "hub.internal_port"), service])
        assert message.startswith(f"cannot listen for the mlflow service on 0.0.0.0:{port} (hub.internal_port + 2): "
                                  "address already in use")
        assert message.endswith("; set hub.internal_port to the first of 3 free ports in a row")
    finally:
        holder.kill()
        holder.wait()
    assert unavailable_port([Listener("the proxy's API", "127.0.0.1", port, "proxy.api_port")]) is None


def test_a_crashed_hubs_configurable_http_proxy_is_stopped_before_the_port_check(tmp_path):
    """JupyterHub stops it only once it starts its proxy, after the check: gpulab does it first."""
    proxy_dir = tmp_path / "proxy"
    proxy_dir.mkdir()
    # a stand-in with the proxy's name in its command line, and one without: only the first goes
    stale = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "configurable-http-proxy"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (proxy_dir / "chp.pid").write_text(str(stale.pid))
        clear_stale_proxy(proxy_dir)
        assert stale.wait(10) is not None
        (proxy_dir / "chp.pid").write_text(str(other.pid))  # a reused pid
        clear_stale_proxy(proxy_dir)
        assert other.poll() is None
    finally:
        for process in (stale, other):
            process.kill()
            process.wait()


def test_a_data_directory_too_long_for_a_helpers_socket_stops_start_up_naming_the_setting():
    """Linux refuses a Unix socket's path over 107 bytes; the root helpers' sockets live in the data directory."""
    from gpulab.hub_config.up import too_long_socket

    long = apply_config(settings(hub={"data_dir": "/srv/" + "d" * 90}), Config())
    short = apply_config(settings(hub={"data_dir": "/srv/gpulab"}), Config())
    if os.geteuid() != 0:
        assert too_long_socket(long) is None  # only a root hub starts the helpers
        return
    message = too_long_socket(long)
    assert "helper's socket /srv/ddd" in message
    assert "a Unix socket's path takes at most 107: choose a shorter hub.data_dir" in message
    assert too_long_socket(short) is None
