"""`gpulab up` end to end: a real hub, traefik, and real single-user servers."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess

import psutil
import pytest

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name
from tests.support.hub import GPULAB, services_of, wait_for


def server_processes(account: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["username", "cmdline"])
            if p.info["username"] == account and any("jupyterhub-singleuser" in part for part in p.info["cmdline"] or [])]


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"spawner": {"named_servers": {"enabled": True}}})


def test_spawn_reach_through_proxy_and_stop(hub):
    hub.create_user("ada")
    hub.spawn("ada")
    status = hub.api.request("GET", "user/ada/api/status")
    assert "started" in status and status["kernels"] == 0
    hub.stop_server("ada")

    def gone() -> int | None:
        """The status the proxy answers for the stopped server; None while traefik still routes to
        it (a 502 for the few milliseconds until it reloads its rules after the hub removed the route)."""
        with pytest.raises(ClientError) as missing:
            hub.api.request("GET", "user/ada/api/status")
        return None if missing.value.status == 502 else missing.value.status

    assert wait_for(gone, 10, "the route of the stopped server to go", interval=0.1) in (404, 424, 503)


def test_the_hubs_own_database_is_in_wal_mode(hub):
    """hub_sqlite.tune, wired in jupyterhub_config.py: the hub's commits append to a write-ahead log."""
    import sqlite3

    hub.create_user("wal")  # the hub has committed since its start
    with sqlite3.connect(hub.data_dir / "jupyterhub.sqlite") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stopping_ends_a_busy_kernel_and_what_it_started_and_nothing_else(hub):
    """A kernel busy in a cell ignores a polite shutdown and its children outlived the server;
    a stop now ends them all (spawner/stopping.py), while the user's other server keeps running.
    Not covered: a process that double-forked into a session of its own."""
    import threading

    from tests.support.kernels import Kernel

    hub.create_user("kim")
    hub.api.request("POST", "hub/api/users/kim/servers/other")
    wait_for(lambda: hub.api.request("GET", "hub/api/users/kim")["servers"].get("other", {}).get("ready"),
             120, "kim's other server")
    account = account_name("kim", hub.settings["spawner"]["local"]["account_prefix"])
    other = {p.pid for p in server_processes(account)}
    hub.spawn("kim")
    kernel = Kernel(hub.url, "kim", hub.user_token("kim"))
    busy = "import subprocess; child = subprocess.Popen(['sleep', '600'])\nwhile True: pass"
    threading.Thread(target=lambda: _ignore_errors(lambda: kernel.run(busy, timeout=300)), daemon=True).start()

    def sleepers():
        return [p for p in psutil.process_iter(["username", "name"]) if p.info["username"] == account
                and p.info["name"] == "sleep"]

    wait_for(sleepers, 30, "the kernel's child")
    kernel_pids = {p.pid for p in psutil.process_iter(["username", "cmdline"]) if p.info["username"] == account
                   and "ipykernel_launcher" in " ".join(p.info["cmdline"] or [])}
    hub.stop_server("kim")
    wait_for(lambda: not sleepers() and not kernel_pids & {p.pid for p in psutil.process_iter()}, 30,
             "the kernel and its child to end")
    assert {p.pid for p in server_processes(account)} == other  # the named server runs on
    assert hub.api.request("GET", "user/kim/other/api/status")["started"]
    hub.stop_server("kim", "other")


def _ignore_errors(call) -> None:
    try:
        call()
    except Exception:  # the kernel ends with its server
        pass


def test_spawn_reports_progress_and_loads_gpulab_extension(hub):
    hub.create_user("pia")
    hub.spawn("pia")
    log = (hub.data_dir / "logs" / "hub.log").read_text()
    assert "pia: Preparing your account" in log and "pia: Starting the server" in log
    server_logs = "".join(p.read_text() for p in (hub.data_dir / "logs" / "servers").glob("*pia*.log"))
    assert "gpulab.spawner.singleuser | extension was successfully loaded" in server_logs
    # JupyterLab's page says it needs no rebuild check (extensions come prebuilt)
    lab = HubClient(hub.url, hub.user_token("pia")).download("user/pia/lab").decode()
    config = json.loads(lab.split('id="jupyter-config-data"', 1)[1].split(">", 1)[1].split("</script>", 1)[0])
    assert (config["buildCheck"], config["buildAvailable"]) == (False, False)
    hub.stop_server("pia")


@pytest.mark.root
def test_two_users_run_as_two_accounts_with_private_homes(hub, hub_defaults):
    prefix = hub_defaults["spawner"]["local"]["account_prefix"]
    for name in ("alice", "bob"):
        hub.create_user(name)
        hub.spawn(name)
    alice, bob = (pwd.getpwnam(account_name(n, prefix)) for n in ("alice", "bob"))
    assert alice.pw_uid != bob.pw_uid
    assert [p.uids().real for p in server_processes(alice.pw_name)] == [alice.pw_uid]
    assert [p.uids().real for p in server_processes(bob.pw_name)] == [bob.pw_uid]

    secret = f"{alice.pw_dir}/secret.txt"
    subprocess.run(["setpriv", f"--reuid={alice.pw_uid}", f"--regid={alice.pw_gid}", "--init-groups",
                    "sh", "-c", f"echo hers > {secret}"], check=True)
    as_bob = subprocess.run(["setpriv", f"--reuid={bob.pw_uid}", f"--regid={bob.pw_gid}", "--init-groups",
                             "cat", secret], capture_output=True, text=True)
    assert as_bob.returncode != 0 and "Permission denied" in as_bob.stderr

    # bob's own API token does not open alice's server through the proxy
    bob_client = HubClient(hub.url, hub.user_token("bob"))
    with pytest.raises(ClientError) as refused:
        bob_client.request("GET", "user/alice/api/contents")
    assert refused.value.status == 403
    assert bob_client.request("GET", "user/bob/api/contents")["type"] == "directory"
    for name in ("alice", "bob"):
        hub.stop_server(name)


def proxies_of(hub) -> list[psutil.Process]:
    marker = str(hub.data_dir / "proxy")
    return [p for p in psutil.process_iter(["cmdline"]) if any(marker in part for part in p.info["cmdline"] or [])]


def test_sigterm_stops_hub_and_proxy_cleanly_and_servers_survive_a_restart(hub_factory):
    hub = hub_factory.start()
    hub.create_user("cleo")
    hub.spawn("cleo")
    before = hub.api.request("GET", "user/cleo/api/status")["started"]
    assert len(proxies_of(hub)) == 1
    assert hub.stop() == 0
    assert proxies_of(hub) == []
    # the services stopped together and quietly: none of them printed a traceback on its way out
    log = hub.log_path.read_text()
    assert re.search(r"Stopping \d+ services together", log) and "Traceback" not in log
    hub.start()
    assert hub.server_model("cleo")["ready"]
    assert hub.api.request("GET", "user/cleo/api/status")["started"] == before
    assert "cleo still running" in hub.log_tail(400)


def test_sigterm_during_start_up_leaves_no_proxy_behind(hub_factory):
    """JupyterHub installs its signal handler only at the end of start-up; gpulab covers the time before."""
    hub = hub_factory.prepare()
    hub.log_path = hub.workdir / "early.log"
    with open(hub.log_path, "wb") as log:
        hub.process = subprocess.Popen([GPULAB, "up", "--config", str(hub.settings_file)], cwd=hub.workdir,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for(lambda: proxies_of(hub), 60, "the proxy to start")
    hub.process.send_signal(signal.SIGTERM)
    try:
        hub.process.wait(30)
    except subprocess.TimeoutExpired:
        hub.process.kill()
        raise AssertionError("the hub outlived an early SIGTERM by 30 s:\n" + hub.log_path.read_text()[-4000:])
    wait_for(lambda: not proxies_of(hub), 15, "the proxy to stop")


def test_a_hub_killed_outright_starts_again_and_a_lone_orphaned_proxy_is_replaced(hub_factory):
    hub = hub_factory.start()
    services = services_of(hub.process.pid)
    assert len(services) >= 4  # projects, MLflow, the scheduler, SSH
    os.kill(hub.process.pid, signal.SIGKILL)  # the hub only: its proxy lives on, holding the ports
    hub.process.wait()
    assert len(proxies_of(hub)) == 1
    # Its services end with it (each in a session of its own, so no process-group signal reaches them).
    wait_for(lambda: not services_of(hub.process.pid), 30, "the killed hub's services to end")
    hub.start()
    assert len(proxies_of(hub)) == 1
    hub.create_user("phoenix")
    hub.spawn("phoenix")
    assert "started" in hub.api.request("GET", "user/phoenix/api/status")


def run_up_to_the_end(second, timeout: float) -> subprocess.CompletedProcess:
    """`gpulab up` for a hub expected to refuse to start; whatever it started goes with it."""
    process = subprocess.Popen([GPULAB, "up", "--config", str(second.settings_file)], cwd=second.workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"the second hub did not stop within {timeout}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("section, key, taken", [
    ("proxy", "api_port", "proxy_api"),  # was: a 30 s wait for traefik, then 401s from the first hub's proxy
    ("hub", "internal_port", "hub"),
    ("hub", "port", "public"),
    ("ssh", "port", "ssh"),
])
def test_a_second_hub_on_a_taken_port_stops_at_once_naming_port_and_setting(hub, hub_factory, section, key, taken):
    """Issue 15: two hubs on one machine. The second hub reuses one of the first's ports."""
    port = hub.ports[taken]
    second = hub_factory.prepare({section: {key: port}}, name="second")
    result = run_up_to_the_end(second, timeout=20)
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert f"on 127.0.0.1:{port} ({section}.{key}" in message, message
    assert "address already in use" in message, message
    if os.geteuid() == 0:  # root sees every process's sockets
        assert "in use, by pid" in message, message
    if key == "api_port":
        assert "traefik" in message, message
    assert proxies_of(second) == []
    # the first hub still serves, through its own proxy
    assert hub.api.request("GET", "hub/api/")["version"]
