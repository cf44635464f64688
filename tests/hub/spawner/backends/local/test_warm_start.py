"""Warm-started servers are as isolated as cold ones (issue 16): real hub as root, real system
accounts, servers forked by the zygote (spawner/backends/local/zygote.py). Each test reads the server from /proc
as root, and from inside, in the user's own kernel: its account and groups, what it can read,
its descriptors, its environment, its cgroup; then stop and a hub restart.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from gpulab.spawner.backends.local.warm_start import ROOM_VARIABLE
from tests.support.hub import wait_for
from tests.support.kernels import Kernel
from tests.support.sessions import signed_in_user
from tests.support.warm_servers import account, descriptors, in_kernel, proc_status, server_process, stop_and_expect_nothing_left


pytestmark = pytest.mark.root

PROFILES = [{"id": "small", "display_name": "Small", "default": True,
             "cpu": {"limit": 1}, "memory": {"limit": "1Gi"}}]


# Through the spawn's environment: JupyterHub's hardening of user servers (import_environment.py),
# a time zone (Python reads TZ as it starts)
HARDENED = {"JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH": "0", "TZ": "EST5EDT"}


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start({"profiles": PROFILES, "spawner": {"environment": HARDENED}})
    for name in ("alice", "bob"):
        hub.create_user(name)
        hub.spawn(name)
    return hub






def is_zygote(process: psutil.Process) -> bool:
    try:
        return "gpulab.spawner.backends.local.zygote" in process.cmdline() and process.uids().real == 0
    except psutil.Error:  # a process of the tree that just ended (a kernel its parent has not reaped yet)
        return False


def zygote(hub) -> psutil.Process:
    found = [p for p in psutil.Process(hub.process.pid).children(recursive=True) if is_zygote(p)]
    assert len(found) == 1, found
    return found[0]





def test_servers_are_forked_by_the_zygote_and_run_as_their_account_only(hub):
    log = hub.log_path.read_text()
    assert "Started alice warm" in log and "Started bob warm" in log
    for user in ("alice", "bob"):
        entry, server = account(hub, user), server_process(hub, user)
        assert server.ppid() == zygote(hub).pid
        status = proc_status(server.pid)
        assert status["Uid"] == [str(entry.pw_uid)] * 4 and status["Gid"] == [str(entry.pw_gid)] * 4
        assert sorted(map(int, status["Groups"])) == sorted(os.getgrouplist(entry.pw_name, entry.pw_gid))
        assert 0 not in map(int, status["Groups"])  # none of root's groups
        assert status["CapEff"] == ["0000000000000000"]
        assert server.cwd() == entry.pw_dir
        assert os.getsid(server.pid) == server.pid  # its own session and process group
        command = server.cmdline()  # what ps shows: the cold command, and one blank argument (the room left)
        assert command[1].endswith("/bin/jupyterhub-singleuser") and len(command) < 40 and not command[-1].strip()
    inside = in_kernel(hub, "alice", "import os, json; print(json.dumps({'uid': os.getresuid(), "
                                     "'gid': os.getresgid(), 'groups': os.getgroups()}))")
    entry = account(hub, "alice")
    assert inside["uid"] == [entry.pw_uid] * 3 and inside["gid"] == [entry.pw_gid] * 3
    assert sorted(inside["groups"]) == sorted(os.getgrouplist(entry.pw_name, entry.pw_gid))


def test_a_server_cannot_read_another_users_home_or_server(hub):
    bob = server_process(hub, "bob")
    code = f"""
import json, os
def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as error:
        return type(error).__name__
print(json.dumps({{
    "home": attempt(lambda: os.listdir({account(hub, "bob").pw_dir!r})),
    "environ": attempt(lambda: open("/proc/{bob.pid}/environ", "rb").read()),
    "mem": attempt(lambda: open("/proc/{bob.pid}/mem", "rb").read(1)),
    "own_environ": attempt(lambda: open("/proc/" + os.environ["JPY_PARENT_PID"] + "/environ", "rb").read()),
}}))
"""
    assert in_kernel(hub, "alice", code) == {"home": "PermissionError", "environ": "PermissionError",
                                             "mem": "PermissionError", "own_environ": "allowed"}



def test_a_server_holds_no_descriptor_of_the_zygote_or_another_spawn(hub):
    alice, bob = server_process(hub, "alice"), server_process(hub, "bob")
    code = """
import json, os
def fds(pid):
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return found
print(json.dumps({"server": fds(os.environ["JPY_PARENT_PID"]), "kernel": fds("self")}))
"""
    # the server's (the kernel's parent is the server's kernel template: test_warm_kernel.py), read by
    # its own account: it is dumpable, as a cold one
    inside = in_kernel(hub, "alice", code)
    server = {int(fd): target for fd, target in inside["server"].items()}
    logs = hub.data_dir / "logs" / "servers"
    own_log = str(logs / f"{account(hub, 'alice').pw_name}.log")
    assert server[0] == "/dev/null" and server[1] == server[2] == own_log
    zygote_held = set(descriptors(zygote(hub).pid).values())
    bob_held = set(descriptors(bob.pid).values())
    for target in [*server.values(), *inside["kernel"].values()]:
        assert target not in zygote_held or target in ("/dev/null",), target
        assert not (target.startswith(("socket:", "pipe:")) and target in bob_held), target
        assert not target.startswith(str(logs)) or target == own_log, target
        assert account(hub, "bob").pw_dir not in target
    assert set(descriptors(alice.pid).values()) >= {own_log}


def test_spawns_at_once_set_up_side_by_side_and_hold_nothing_of_each_other(hub):
    """The zygote forks each spawn and goes back to its loop (each child sets itself up while the
    next is forked): a server holds no connection, pipe or log of another spawn forked beside it."""
    names = ["hana", "ivan", "jude"]
    for name in names:
        hub.create_user(name)
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(hub.spawn, names))
    log = hub.log_path.read_text()
    servers = {name: server_process(hub, name) for name in names}
    held = {name: set(descriptors(server.pid).values()) for name, server in servers.items()}
    for name in names:
        entry = account(hub, name)
        assert f"Started {name} warm" in log and servers[name].ppid() == zygote(hub).pid
        assert proc_status(servers[name].pid)["Uid"] == [str(entry.pw_uid)] * 4
        for other in names:
            if other != name:
                shared = {t for t in held[name] & held[other] if t.startswith(("socket:", "pipe:"))}
                assert not shared, (name, other, shared)
                assert account(hub, other).pw_name not in " ".join(held[name])
    for name in names:
        hub.stop_server(name)


def test_the_environment_is_exactly_the_spawns(hub):
    alice, bob = server_process(hub, "alice").environ(), server_process(hub, "bob").environ()
    assert alice["JUPYTERHUB_USER"] == "alice" and bob["JUPYTERHUB_USER"] == "bob"
    assert alice["JUPYTERHUB_API_TOKEN"] != bob["JUPYTERHUB_API_TOKEN"]
    assert alice["HOME"] == account(hub, "alice").pw_dir and alice["USER"] == account(hub, "alice").pw_name
    assert ROOM_VARIABLE not in alice and "/nonexistent" not in json.dumps(alice)
    assert bob["JUPYTERHUB_API_TOKEN"] not in json.dumps(alice)
    # The server's real os.environ (its kernel inherits it) is what /proc shows, plus the kernel's own.
    kernel = in_kernel(hub, "alice", "import os, json; print(json.dumps(dict(os.environ)))")
    kept_from_kernels = {"GPULAB_SSH_ENDPOINT_SEED"}  # the server takes it out of its os.environ
    assert {k: v for k, v in alice.items() if k not in kept_from_kernels}.items() <= kernel.items()
    assert set(kernel) - set(alice) <= {"JPY_PARENT_PID", "PYDEVD_USE_FRAME_EVAL", "JPY_SESSION_NAME",
                                        "MPLBACKEND", "CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "PAGER", "GIT_PAGER",
                                        "TERM", "COLUMNS", "LINES"}, set(kernel) - set(alice)
    assert bob["JUPYTERHUB_API_TOKEN"] not in json.dumps(kernel)
    # What a new interpreter would have computed from the home: the account's, not the zygote's.
    paths = in_kernel(hub, "alice", "import json; from jupyterlab.labapp import LabApp; "
                                    "print(json.dumps({'settings': LabApp().user_settings_dir}))")
    assert paths["settings"].startswith(account(hub, "alice").pw_dir)
    assert "/nonexistent" not in (hub.data_dir / "logs" / "servers" / f"{account(hub, 'alice').pw_name}.log").read_text()


KEPT_AT_IMPORT = """
import json
from jupyterhub.services.auth import HubOAuth
from jupyter_client.session import Session
names = ["base_url", "api_url", "allow_token_in_url", "allow_websocket_cookie_auth"]
print(json.dumps({"auth": {n: getattr(HubOAuth(api_token="t", oauth_client_id="c"), n) for n in names},
                  "user": Session().username}))
"""


def test_what_imports_kept_of_the_environment_is_what_a_new_interpreter_computes_from_the_spawns(hub):
    """The zygote imported JupyterHub's auth and jupyter_client with its own environment; the forked
    server derives those values again from its own (its kernel, a copy of it, shows them): the same
    as a new interpreter computes from the same environment, the hub's hardening included."""
    code = f"""
import contextlib, io, json, os, subprocess, sys
forked = io.StringIO()
with contextlib.redirect_stdout(forked):
    exec({KEPT_AT_IMPORT!r}, {{}})
new = subprocess.run([sys.executable, "-c", {KEPT_AT_IMPORT!r}], env=dict(os.environ), capture_output=True, text=True)
print(json.dumps({{"forked": json.loads(forked.getvalue()), "new": json.loads(new.stdout or "null"),
                  "errors": new.stderr[-500:]}}))
"""
    seen = in_kernel(hub, "alice", code)
    assert seen["forked"] == seen["new"], seen
    assert seen["forked"]["auth"]["allow_websocket_cookie_auth"] is False
    assert seen["forked"]["user"] == account(hub, "alice").pw_name
    assert seen["forked"]["auth"]["base_url"] == "/user/alice/"


def test_a_kernel_has_the_interpreter_state_of_a_new_one(hub):
    """What an interpreter takes from its start came with the fork: sys.flags (multiprocessing's
    spawn, PyTorch's DataLoader with CUDA, passes them on to its workers: -E and -s there would drop
    PYTHONPATH and the user's own packages), the time zone, the command line: they are those of
    `python -m ipykernel_launcher` started with the same environment."""
    code = """
import json, subprocess, sys
from multiprocessing import spawn
STATE = "import json, sys, time; print(json.dumps([list(sys.flags), time.tzname, time.timezone, time.daylight]))"
new = subprocess.run([sys.executable, "-c", STATE], capture_output=True, text=True).stdout
import time
print(json.dumps({"forked": [list(sys.flags), time.tzname, time.timezone, time.daylight], "new": json.loads(new),
                  "spawn": spawn.get_command_line()[1:], "argv": sys.orig_argv}))
"""
    seen = in_kernel(hub, "alice", code)
    assert seen["forked"] == seen["new"]
    assert seen["forked"][1] == ["EST", "EDT"]
    assert seen["argv"][1:4] == ["-m", "ipykernel_launcher", "-f"] and len(seen["argv"]) == 5
    assert seen["spawn"][0] == "-c", seen["spawn"]  # multiprocessing's spawn: no interpreter flags


def test_a_server_and_its_kernels_land_in_its_cgroup(hub):
    server = server_process(hub, "alice")
    name = account(hub, "alice").pw_name
    kernel = Kernel(hub.url, "alice", hub.user_token("alice"))
    try:
        kernel_pid = int(kernel.run("import os; print(os.getpid())").strip())
        for pid in (server.pid, kernel_pid):
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            limited = [line for line in lines if ":memory:" in line or ":cpu," in line or ":cpu:" in line]
            limited = limited or [line for line in lines if line.startswith("0::")]  # cgroup v2 only
            assert limited and all(line.endswith(f"/gpulab/{name}") for line in limited), lines
    finally:
        kernel.shutdown()


def test_stop_kills_the_server_its_kernels_and_their_children(hub):
    hub.create_user("carol")
    hub.spawn("carol")
    server = server_process(hub, "carol")
    kernel = Kernel(hub.url, "carol", hub.user_token("carol"))
    child = int(kernel.run("import subprocess; print(subprocess.Popen(['sleep', '600']).pid)").strip())
    started = [server, *server.children(recursive=True)]
    assert any(p.pid == child for p in started)
    stop_and_expect_nothing_left(hub, "carol", started, "carol's server, kernel and sleep to end")


def test_a_hub_restart_keeps_polling_warm_servers_right(hub):
    hub.create_user("dave")
    hub.spawn("dave")
    dave, alice = server_process(hub, "dave"), server_process(hub, "alice")
    old_zygote = zygote(hub)
    hub.stop()
    wait_for(lambda: not old_zygote.is_running() or old_zygote.status() == psutil.STATUS_ZOMBIE, 10,
             "the zygote to exit with the hub")
    assert dave.is_running() and alice.is_running()  # servers outlive their zygote
    os.kill(dave.pid, signal.SIGKILL)  # dies while the hub is down
    wait_for(lambda: not dave.is_running() or dave.status() == psutil.STATUS_ZOMBIE, 10, "dave's server to die")
    hub.start()
    assert hub.server_model("dave") is None  # the hub's first poll saw it gone
    model = hub.server_model("alice")
    assert model is not None and model["ready"]
    assert in_kernel(hub, "alice", "import os, json; print(json.dumps(os.getuid()))") == account(hub, "alice").pw_uid
    hub.stop_server("alice")
    wait_for(lambda: not alice.is_running() or alice.status() == psutil.STATUS_ZOMBIE, 10, "alice's server to end")
    hub.spawn("alice")  # a new zygote for the restarted hub
    assert server_process(hub, "alice").ppid() == zygote(hub).pid
    time.sleep(0)  # (nothing timed here: the checks above poll)


def test_an_environment_the_zygote_cannot_serve_starts_cold(hub_factory, homes_root):
    """Its Python has no gpulab (nor jupyterhub): the zygote cannot start, the spawn does, cold."""
    env = homes_root / "python-without-gpulab"
    (env / "bin").mkdir(parents=True, exist_ok=True)
    script = env / "bin" / "jupyterhub-singleuser"
    real = Path(sys.executable).parent / "jupyterhub-singleuser"
    script.write_text(f"#!/usr/bin/python3\nimport os, sys\n"
                      f"os.execv({sys.executable!r}, [{sys.executable!r}, {str(real)!r}, *sys.argv[1:]])\n")
    for path in (env, env / "bin", script):
        path.chmod(0o755)
    hub = hub_factory.start({"spawner": {"local": {"python": str(env)}}})
    hub.create_user("erin")
    hub.spawn("erin")
    assert "Starting erin cold: the zygote of /usr/bin/python3 exited with 1 while starting" in hub.log_path.read_text()
    assert server_process(hub, "erin").ppid() == hub.process.pid  # the hub's own child, as before warm starts
    hub.stop_server("erin")
    hub.create_user("frank")
    hub.spawn("frank")  # the zygote is not tried again for every spawn
    log = hub.log_path.read_text()
    assert log.count("Starting frank cold: the zygote of /usr/bin/python3 exited") == 1
    assert log.count("No module named 'gpulab'") == 1  # what the zygote said, once
    hub.stop_server("frank")


def test_a_zygote_that_died_is_started_again_and_its_servers_live_on(hub):
    alice = server_process(hub, "alice")
    old = zygote(hub)
    old.kill()
    wait_for(lambda: not old.is_running() or old.status() == psutil.STATUS_ZOMBIE, 10, "the zygote to die")
    assert alice.is_running() and hub.server_model("alice")["ready"]
    hub.create_user("gus")
    hub.spawn("gus")
    assert server_process(hub, "gus").ppid() == zygote(hub).pid != old.pid
    hub.stop_server("gus")
    hub.stop_server("alice")
    wait_for(lambda: not alice.is_running() or alice.status() == psutil.STATUS_ZOMBIE, 10, "alice's server to end")


def test_a_running_hub_has_its_zygote_ready_and_the_spawn_form_starts_a_dead_one_again(hub_factory):
    """Once running, the hub starts its default environment's zygote before anyone spawns, so the
    first spawn after a (re)start, through the API too, is forked at once. A zygote that died is
    started again as soon as someone is about to spawn: showing the spawn form starts it in the
    background, and the spawn that follows is forked from it (not slowed by its start)."""
    hub = hub_factory.start({"profiles": [*PROFILES, {"id": "large", "display_name": "Large", "cpu": {"limit": 2}}],
                             "auth": {"admin_users": ["warm-admin"]}})

    def zygotes() -> list[psutil.Process]:
        return [p for p in psutil.Process(hub.process.pid).children(recursive=True) if is_zygote(p)]

    first = wait_for(zygotes, 60, "the zygote to start with the hub, before any spawn")
    assert len(first) == 1 and "warm from the zygote" not in hub.log_path.read_text()  # no spawn yet
    hub.create_user("hana")
    hub.spawn("hana")  # through the API, no form shown
    assert server_process(hub, "hana").ppid() == first[0].pid
    first[0].kill()
    wait_for(lambda: not zygotes(), 10, "the killed zygote to be gone")
    gina = signed_in_user(hub, "gina", "warm-admin")
    form = gina.get(f"{hub.url}hub/spawn/gina", timeout=30)
    assert form.status_code == 200 and 'name="profile"' in form.text
    started = wait_for(zygotes, 60, "the zygote to start again while the form is shown")
    assert started[0].pid != first[0].pid
    hub.spawn("gina")
    assert server_process(hub, "gina").ppid() == started[0].pid
    assert "Started gina warm from the zygote" in hub.log_path.read_text()
    assert hub.server_model("hana")["ready"]  # the zygote's death ended none of its servers
