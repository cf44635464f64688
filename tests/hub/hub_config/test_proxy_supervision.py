"""Supervision: a proxy or managed service killed outright (SIGKILL) is restarted by the hub.

The done criterion of issue 12: servers reachable through the public port again within 10 s of
traefik's death, and the outage logged.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from gpulab.hub_config.services.service_account import service_account_name
from tests.support.hub import services_of, wait_for
from tests.support.probes import answers


def traefik_of(hub) -> list[psutil.Process]:
    """The live traefik processes this hub started (a defunct one does not count)."""
    marker = str(hub.data_dir / "proxy" / "traefik.toml")
    found = []
    for process in psutil.Process(hub.process.pid).children(recursive=True):
        try:
            if marker in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


def proxy_account(hub) -> pwd.struct_passwd:
    return pwd.getpwnam(service_account_name(hub.settings["spawner"]["local"]["account_prefix"], "proxy"))


def test_a_killed_traefik_is_restarted_with_every_route_within_10_s(hub_factory):
    hub = hub_factory.start()
    hub.create_user("tess")
    hub.spawn("tess")
    status_url = hub.url + "user/tess/api/status"
    assert answers(status_url)
    [old] = traefik_of(hub)
    if os.geteuid() == 0:  # traefik runs as its own account (issue 12), and is restarted as it
        assert old.uids().real == old.uids().effective == proxy_account(hub).pw_uid

    old.send_signal(signal.SIGKILL)
    wait_for(lambda: not answers(status_url), 5, "the server to be unreachable with traefik dead")
    wait_for(lambda: answers(status_url), 10, "the server to answer through a restarted traefik")

    [new] = traefik_of(hub)
    assert new.pid != old.pid
    if os.geteuid() == 0:
        assert new.uids().effective == proxy_account(hub).pw_uid
    assert not psutil.pid_exists(old.pid)  # reaped, not left defunct
    assert f"The proxy (traefik, pid {old.pid}) exited with status -9" in hub.log_tail(400)
    # traefik serves the routes in its file at once; the hub logs once it checked them all
    wait_for(lambda: "the outage lasted at most" in hub.log_tail(400), 30, "the hub to log the outage")


def test_a_killed_service_is_restarted_by_the_hub(hub_factory):
    hub = hub_factory.start()
    hub.create_user("sam")
    token = hub.user_token("sam")
    projects_url = hub.url + "services/projects/api/projects"
    assert answers(projects_url, token)
    [old] = [p for p in services_of(hub.process.pid) if "JUPYTERHUB_SERVICE_NAME" in p.environ()
             and p.environ()["JUPYTERHUB_SERVICE_NAME"] == "projects"]

    os.kill(old.pid, signal.SIGKILL)
    # JupyterHub alone polls a managed service every 30 s; gpulab's proxy polls them every second.
    wait_for(lambda: "Service projects exited with status -9" in hub.log_tail(400), 10,
             "the hub to notice the projects service died")
    wait_for(lambda: answers(projects_url, token), 30, "the projects service to answer again")
    assert "Service projects died (status -9) and is being started again" in hub.log_tail(400)

    # Services stopped on purpose (the hub shutting down) are not started again.
    pid = hub.process.pid
    hub.stop()
    shutdown = hub.log_path.read_text(errors="replace").split("initiating shutdown")[-1]
    assert "Starting service" not in shutdown
    wait_for(lambda: not services_of(pid), 15, "the services to end with the hub")


def test_an_oversized_header_is_a_431_from_the_proxy_not_a_502(hub_factory):
    hub = hub_factory.start()
    for size, expected in ((100_000, 431), (20_000, 403)):  # 403: a well-sized header with a bad token
        request = urllib.request.Request(hub.url + "hub/api/users", headers={"Authorization": "token " + "x" * size})
        try:
            urllib.request.urlopen(request, timeout=10)
            status = 200
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == expected, size


def test_the_proxy_drops_headers_whose_names_alias_a_header_it_sets(hub_factory):
    """X_Forwarded_Host or X.Forwarded.Host would read as X-Forwarded-Host to a WSGI application
    such as MLflow's Flask server (CVE-2026-88879): traefik drops such headers before routing, and
    still sends its own X-Forwarded-Host. The backend is an external service of the hub that
    records the headers it receives."""
    received: list[dict[str, str]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self):
            received.append(dict(self.headers.items()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        hub = hub_factory.prepare()
        (hub.workdir / "jupyterhub_config.d" / "10-recorder.py").write_text(
            f'c.JupyterHub.services.append({{"name": "recorder", "url": "http://127.0.0.1:{backend.server_port}"}})\n')
        hub.start()
        request = urllib.request.Request(hub.url + "services/recorder/", headers={
            "X_Forwarded_Host": "evil.example", "X.Forwarded.Host": "evil.example", "X-Probe": "kept"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        backend.shutdown()
    [headers] = [h for h in received if "X-Probe" in h]  # (the hub checks its services on its own too)
    assert "X-Forwarded-Host" in headers
    assert not [name for name, value in headers.items() if "evil" in value]


@pytest.mark.root
def test_traefik_s_account_reads_its_configuration_and_nothing_else_of_the_hub(hub_factory):
    """As root the proxy needs no root: its account owns the folder of its configuration files
    (written as its files, atomically) and cannot open gpulab's or JupyterHub's databases, the
    cookie secret, or a user's home."""
    hub = hub_factory.start()
    hub.create_user("uma")
    hub.spawn("uma")
    entry = proxy_account(hub)
    [traefik] = traefik_of(hub)
    assert traefik.uids().effective == entry.pw_uid and set(traefik.gids()) == {entry.pw_gid}

    def can_read(path) -> bool:
        reader = "ls" if os.path.isdir(path) else "cat"
        return subprocess.run(["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                               reader, str(path)], capture_output=True).returncode == 0

    assert can_read(hub.data_dir / "proxy" / "rules.toml")  # control: what it needs
    home = pwd.getpwnam(f"{hub.settings['spawner']['local']['account_prefix']}uma").pw_dir
    for private in (hub.data_dir / "state" / "gpulab.sqlite", hub.data_dir / "jupyterhub.sqlite",
                    hub.data_dir / "jupyterhub_cookie_secret", home):
        assert os.path.exists(private), private
        assert not can_read(private), private
