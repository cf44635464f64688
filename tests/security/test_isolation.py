"""The isolation matrix, replayed as ordinary users against one real hub (issue 12).

alice owns a server, a kernel, a terminal, files, a schedule and a finished run, an MLflow run
with an artifact, an SSH key and project "vision" (bob is an editor; mallory is in nothing);
see `isolation_world`. Each cell (`isolation_web`, `isolation_system`) is one test per
intruder: alice (or whoever owns the thing) must get in, so the probe can see access, and
bob, mallory or a request with no credentials must not.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

import psutil
import pytest
import requests

from tests.security.isolation_probes import as_account, as_uid, granted, headers, http, reads
from tests.security.isolation_kernel import eavesdropper, send_to_kernel, shell_socket_opens
from tests.security.isolation_system import (PROC_ITEMS, PROCESSES, find_process, hub_workdir_passable, proc_readable,
                                              owned_under, readable_files, secrets_of, system_cells)
from tests.security.isolation_web import web_cells
from tests.security.isolation_world import SECRET_FILE, build_world, notebook
from tests.support.hub import HubFactory, wait_for
from tests.support.projects import project_settings
from tests.support.ssh import OpenSSH, known_hosts

pytestmark = pytest.mark.root

CELLS = [*web_cells(), *system_cells()]


@pytest.fixture(scope="module")
def world(hub_defaults, projects_root, account_prefix, tmp_path_factory):
    # The hub's folder must be one other accounts can pass through (pytest's are root's only),
    # so that what keeps bob out of the data directory is gpulab's doing.
    root = Path(tempfile.mkdtemp(prefix="gpulab-isolation-", dir="/tmp"))
    root.chmod(0o755)
    factory = HubFactory(root, hub_defaults)
    try:
        hub = factory.start(project_settings(projects_root, account_prefix, "iso"))
        yield build_world(hub, tmp_path_factory.mktemp("keys"))
    finally:
        factory.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def matrix():
    for cell in CELLS:
        for intruder in cell.intruders:
            yield pytest.param(cell, intruder, id=f"{cell.id}/{intruder}")


@pytest.mark.parametrize("cell, intruder", list(matrix()))
def test_cell_is_denied(world, cell, intruder):
    assert cell.probe(world, cell.owner), f"control: {cell.owner} cannot reach {cell.id}; the probe proves nothing"
    assert not cell.probe(world, intruder), f"{intruder} reached {cell.id}"


@pytest.mark.parametrize("intruder", ["bob", "mallory"])
def test_the_data_directory_alone_keeps_accounts_out(world, intruder):
    """The control of the data cells: the folder above the data directory is open to them."""
    assert hub_workdir_passable(world, intruder)


@pytest.mark.parametrize("intruder", ["bob", "mallory"])
def test_no_file_in_the_data_directory_is_readable(world, intruder):
    """Every file there now, not only the ones the matrix names: each readable by its owner."""
    owners = {}  # path -> uid of its owner, for the regular files (a WAL file may come and go)
    for folder, _, names in os.walk(world.hub.data_dir):
        for path in (os.path.join(folder, name) for name in names):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG((info := os.stat(path)).st_mode):
                    owners[path] = info.st_uid
    assert len(owners) > 20
    files = sorted(owners)
    for owner in set(owners.values()):
        mine = [path for path in files if owners[path] == owner]
        unread = set(mine) - set(readable_files(owner, mine))
        assert not [path for path in unread if os.path.exists(path)], "control: owners read their files"
    assert readable_files(world.accounts[intruder].pw_uid, files) == []


@pytest.mark.parametrize("intruder", ["bob", "mallory"])
def test_what_alice_leaves_in_temporary_folders_is_hers(world, intruder):
    """Files and folders of alice's account in /tmp, /var/tmp and /dev/shm (her home lives under
    /tmp here; project folders, shared on purpose, are left out, and so are pytest's own folders,
    where other test modules leave files of an account named alice too)."""
    alice = world.accounts["alice"].pw_uid
    found = owned_under(["/tmp", "/var/tmp", "/dev/shm"], alice,
                        skip=(str(world.project_folder.parent.parent), "/tmp/pytest-of-"))
    assert str(world.tensorboard_socket.parent) in found  # TensorBoard's private folder at least
    unread = set(found) - set(readable_files(alice, found))
    assert not [path for path in unread if os.path.exists(path)], "control: alice reads her own"
    assert readable_files(world.accounts[intruder].pw_uid, found) == []


@pytest.mark.parametrize("target", PROCESSES)
def test_no_secret_is_on_a_command_line(world, target):
    """Command lines are world-readable in /proc (no hidepid here), so no token may be on one."""
    process = find_process(world, target)
    shown = as_account(world, "bob", "cat", f"/proc/{process.pid}/cmdline")
    assert shown.returncode == 0 and shown.stdout, "control: bob reads command lines"
    leaked = [s[:6] + "..." for s in secrets_of(world, process) if s.encode() in shown.stdout]
    assert not leaked, f"secrets on the command line of {target}: {leaked}"


@pytest.mark.parametrize("intruder", ["bob"])
def test_ssh_as_alice_with_someone_elses_key_is_refused(world, intruder, tmp_path):
    port = world.hub.ports["ssh"]
    trusted = known_hosts(world.hub, port, tmp_path)
    alice = OpenSSH(port, trusted, world.keys["alice"]).ssh("alice", f"cat {SECRET_FILE}")
    assert alice.returncode == 0 and world.secret in alice.stdout.decode(), alice.stderr.decode()
    # from its own loopback address, so a lock-out could never spill onto alice's control
    other = OpenSSH(port, trusted, world.keys[intruder], source="127.0.0.5").ssh("alice", f"cat {SECRET_FILE}")
    assert other.returncode == 255 and world.secret not in other.stdout.decode()


@pytest.mark.parametrize("port", ["proxy_api", "public"])
@pytest.mark.parametrize("who", ["anonymous", "bob"])
def test_the_proxys_routing_api_needs_the_hubs_credentials(world, port, who):
    """traefik's API (and its dashboard) would show every route and target; only the hub holds
    its password. The control: the routes exist (the hub lists alice's) and traefik's API answers 401."""
    assert "/user/alice/" in world.targets
    base = f"http://127.0.0.1:{world.hub.ports[port]}/"
    for path in ("api/http/routers", "api/rawdata", "dashboard/"):
        for auth in ([None, ("jupyterhub", world.tokens["bob"])] if who == "bob" else [None]):
            response = requests.get(base + path, headers=headers(world, who), auth=auth, allow_redirects=False,
                                    timeout=60)
            assert not granted(response), (port, path, response.status_code, response.text[:200])
            if port == "proxy_api" and path.startswith("api/"):
                assert response.status_code == 401  # traefik's API is there and wants its password


def test_kernel_ports_run_nothing_without_the_key(world):
    """bob can find the kernel's ports but not read its key: what he sends unsigned or signed
    with a guess reaches the kernel, which logs it as invalid and runs nothing; alice's runs.
    (With the ipc transport the sockets are files in alice's private folder: bob cannot connect.)"""
    home, info = world.home("alice"), json.loads(world.connection_file.read_text())
    log = world.hub.data_dir / "logs" / "servers" / f"{world.accounts['alice'].pw_name}.log"
    refusals = lambda: log.read_text(errors="replace").count("Invalid message")  # noqa: E731
    if info["transport"] == "ipc":
        assert shell_socket_opens(world, "alice") and not shell_socket_opens(world, "bob")
    else:
        for attempt, guess in enumerate(("", "a-guessed-key")):
            before = refusals()
            sent = send_to_kernel(world, "bob", guess, f"open({str(home / f'zmq-bob-{attempt}')!r}, 'w')")
            assert sent.returncode == 0, sent.stderr.decode()
            wait_for(lambda: refusals() > before, 30, f"the kernel to refuse bob's message {attempt}")
    control = send_to_kernel(world, "alice", info["key"], f"open({str(home / 'zmq-alice')!r}, 'w')")
    assert control.stdout.strip() == b"ok" and (home / "zmq-alice").exists(), control.stderr.decode()
    assert not list(home.glob("zmq-bob-*"))


def test_nobody_else_hears_what_alices_kernel_says(world):
    """A kernel publishes its code and outputs on its iopub port; the key signs messages but
    does not hide them, so an account that can connect to the port reads them all. Kernels on
    the ipc transport (`--KernelManager.transport=ipc`, with a runtime folder short enough for a
    socket path, private to the user) pass this test; TCP kernels on 127.0.0.1 do not."""
    key = json.loads(world.connection_file.read_text())["key"]
    marker = f"iopub-{secrets.token_hex(4)}"
    listener = eavesdropper(world, "bob", "alice", marker)
    try:
        assert "listening to" in listener.stdout.readline()
        for attempt in range(20):  # a subscription takes a moment to reach the publisher
            control = send_to_kernel(world, "alice", key, f"print({marker!r}, {attempt})")
            assert control.stdout.strip() == b"ok", control.stderr.decode()
            if listener.poll() is not None:
                break
    finally:
        listener.kill()
    heard = listener.communicate()[0]
    assert "heard:" not in heard, f"bob read alice's kernel from its ports: {heard}"


def runner_of(world, run_id: str) -> psutil.Process | None:
    for process in psutil.process_iter(["username", "cmdline"]):
        if process.info["username"] == world.accounts["alice"].pw_name and \
                "gpulab.extensions.scheduler.runner" in (process.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                if process.environ().get("GPULAB_RUN_URL", "").endswith(f"{run_id}/"):
                    return process
    return None


def test_a_run_in_flight_is_alices_alone(world):
    """A running notebook's runner holds its run's token: its /proc entries are alice's alone,
    and the runner API (spec, output upload) takes that token and no hub user's."""
    alice = world.client("alice")
    run = alice.request("POST", "services/scheduler/api/runs",
                        {"name": "in-flight", "notebook": notebook("import time; time.sleep(600)")})
    try:
        runner = wait_for(lambda: runner_of(world, run["id"]), 120, "the run's runner")
        url, token = (runner.environ()[name] for name in ("GPULAB_RUN_URL", "GPULAB_RUN_TOKEN"))
        for item in PROC_ITEMS:
            assert proc_readable(runner, world.accounts["alice"].pw_uid, item), f"control: alice reads {item}"
            assert not proc_readable(runner, world.accounts["bob"].pw_uid, item), f"bob reads the runner's {item}"
        spec = requests.get(url + "spec", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert granted(spec, "time.sleep"), "control: the run's token reads its spec"
        for who in ("bob", "alice", "anonymous"):  # hub tokens, even the owner's, are not run tokens
            assert not granted(requests.get(url + "spec", headers=headers(world, who), timeout=60), "time.sleep"), who
            upload = requests.put(url + "files/output.ipynb", headers=headers(world, who), data=b"{}", timeout=60)
            assert not granted(upload), who
    finally:
        alice.request("POST", f"services/scheduler/api/runs/{run['id']}/stop")


def mlflow(world, who: str, method: str, path: str, **kwargs) -> requests.Response:
    return http(world, who, method, world.hub.url + "services/mlflow/" + path, **kwargs)


def run_at(world, who: str, location: str) -> tuple[requests.Response, str | None]:
    """An experiment of `who`'s with `location` as its artifact location, and a run in it."""
    created = mlflow(world, who, "POST", "api/2.0/mlflow/experiments/create",
                     json={"name": f"loot-{secrets.token_hex(4)}", "artifact_location": location})
    if created.status_code != 200:
        return created, None
    run = mlflow(world, who, "POST", "api/2.0/mlflow/runs/create",
                 json={"experiment_id": created.json()["experiment_id"]})
    return run, run.json()["run"]["info"]["run_id"] if run.status_code == 200 else None


def test_mlflow_serves_no_file_outside_its_artifact_root(world):
    """Finding 1: an experiment located in bob's home, its run's artifact folder a link to the
    hub's data directory, and get-artifact served the cookie secret (MLflow ran as root)."""
    cookie_secret = world.hub.data_dir / "jupyterhub_cookie_secret"
    assert reads(world, "bob", str(cookie_secret)) is False and as_uid(0, "cat", str(cookie_secret)).stdout
    loot = world.home("bob") / "mlart"
    response, run = run_at(world, "bob", f"file://{loot}")
    if run is not None:  # link the run's artifact folder to the hub's data directory, as bob
        as_account(world, "bob", "mkdir", "-p", str(loot / run))
        as_account(world, "bob", "ln", "-sfn", str(world.hub.data_dir), str(loot / run / "artifacts"))
        response = mlflow(world, "bob", "GET", f"get-artifact?path=jupyterhub_cookie_secret&run_uuid={run}")
    assert response.status_code < 500 and cookie_secret.read_text().strip() not in response.text


def test_mlflow_writes_no_file_outside_its_artifact_root(world):
    """Finding 1: an experiment located in alice's home, and upload-artifact wrote there."""
    planted = world.home("alice") / "planted"
    response, run = run_at(world, "bob", f"file://{planted}")
    if run is not None:
        response = mlflow(world, "bob", "POST", f"ajax-api/2.0/mlflow/upload-artifact?run_uuid={run}&path=x.txt",
                          data=b"from bob")
    assert response.status_code < 500 and not planted.exists(), f"bob wrote into alice's home ({response.status_code})"
