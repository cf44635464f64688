"""The scheduler runs as its own account; only its root helper starts runs as their owners (issue 12).

A real hub running as root, started on a data directory an earlier gpulab left behind (its
SQLite database in the data directory itself, as before the state folder). Checked from
outside: the uid in /proc of the service and of the launcher, what the service's account can
open (`cat` as that uid), who can reach the launcher's socket, what the launcher refuses
(through its real socket, as the service's account would ask), a run as its owner, and a kill
-9 of the launcher with a run in flight: the run ends COMPLETED once, and the next run works.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from gpulab.db.migrate import upgrade
from gpulab.hub_config.services.service_account import MARKER, service_account_name
from gpulab.hub_config.client import HubClient
from tests.support.hub import (can_read_as, managed_service_process, process_uids, run_as_account, service_runs_as,
                               wait_for)
from tests.support.scheduler_runs import notebook, outputs_text, run_once, wait_run


pytestmark = pytest.mark.root

MODULES = {"service": "gpulab.extensions.scheduler.service", "launcher": "gpulab.extensions.scheduler.launcher"}


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.prepare({"mlflow": {"enabled": False}, "ssh": {"enabled": False}}, name="schedsvc")
    hub.data_dir.mkdir(parents=True, mode=0o700)
    upgrade(f"sqlite:///{hub.data_dir / 'gpulab.sqlite'}")  # where an earlier gpulab kept it
    return hub.start()


@pytest.fixture(scope="module")
def dana(hub) -> HubClient:
    hub.create_user("sa-dana")
    return HubClient(hub.url, hub.user_token("sa-dana"))


def service_account(account_prefix) -> pwd.struct_passwd:
    return pwd.getpwnam(service_account_name(account_prefix, "scheduler"))


def runs_as(hub, name: str, uid: int) -> psutil.Process:
    return service_runs_as(hub, MODULES[name], uid)


def socket_file(hub) -> Path:
    return hub.data_dir / "scheduler-launcher" / "launcher.sock"


# What the service's account sends, from a process of that account (SO_PEERCRED is checked).
ASK = """
import json, sys
from gpulab.hub_config.services.root_helper import HelperClient
print(json.dumps(HelperClient(sys.argv[1], "launcher", wait=5).send(json.loads(sys.argv[2]))))
"""


def ask_as(entry: pwd.struct_passwd, hub, request: dict) -> dict:
    done = run_as_account(entry, sys.executable, "-c", ASK, str(socket_file(hub)), json.dumps(request))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_service_runs_as_its_own_account_and_only_the_launcher_as_root(hub, account_prefix):
    entry = service_account(account_prefix)
    assert entry.pw_uid != 0 and entry.pw_gecos == MARKER and entry.pw_shell.endswith(("nologin", "false"))
    runs_as(hub, "service", entry.pw_uid)
    runs_as(hub, "launcher", 0)


def test_a_run_runs_as_its_owner_and_its_files_are_the_services(hub, dana, account_prefix):
    run = run_once(dana, notebook("import os; print('uid', os.getuid())"))
    done = wait_run(dana, run["id"])
    assert done["status"] == "COMPLETED", done
    owner = pwd.getpwnam(f"{account_prefix}sa-dana")
    executed = dana.request("GET", f"services/scheduler/api/runs/{run['id']}/files/output.ipynb")
    assert f"uid {owner.pw_uid}" in outputs_text(executed)
    log = hub.data_dir / "scheduler" / "runs" / run["id"] / "log.txt"
    assert log.stat().st_uid == service_account(account_prefix).pw_uid


def test_its_account_keeps_gpulabs_database_and_cannot_open_the_hubs_secrets_or_a_home(hub, dana, account_prefix):
    entry = service_account(account_prefix)
    owner = pwd.getpwnam(f"{account_prefix}sa-dana")
    secret = Path(owner.pw_dir) / "private.txt"
    subprocess.run(["sh", "-c", f"umask 077; echo mine > {secret}"], user=owner.pw_uid, group=owner.pw_gid, check=True)
    for path in (hub.data_dir / "jupyterhub.sqlite", hub.data_dir / "jupyterhub_cookie_secret", secret):
        assert path.exists() and can_read_as(pwd.getpwuid(0), path), path  # the check can succeed
        assert not can_read_as(entry, path), path
    database = hub.data_dir / "state" / "gpulab.sqlite"
    assert not (hub.data_dir / "gpulab.sqlite").exists()  # moved into the state folder, once
    assert can_read_as(entry, database)
    assert (database.parent.stat().st_uid, database.parent.stat().st_mode & 0o777) == (entry.pw_uid, 0o700)


def test_only_the_services_account_reaches_the_launcher(hub, dana, account_prefix):
    for other in (pwd.getpwnam(f"{account_prefix}sa-dana"), pwd.getpwnam("nobody")):
        refused = run_as_account(other, sys.executable, "-c", ASK, str(socket_file(hub)), '{"op": "cleanup"}')
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, (other.pw_name, refused)


LAUNCH: dict = {"run_id": str(uuid.uuid4()), "owner": "sa-dana", "python": "", "env": {},
          "limits": {"cpu_limit": None, "cpu_guarantee": None, "memory_limit": None, "memory_guarantee": None},
          "image": ""}


@pytest.mark.parametrize("request_, reason", [
    ({"op": "start", "launch": {**LAUNCH, "python": "/bin/sh"}}, "python '/bin/sh' is not one of the configured"),
    ({"op": "start", "launch": LAUNCH}, "start takes the run's log file as one descriptor, got 0"),
    ({"op": "start", "launch": {**LAUNCH, "owner": ""}}, "not a hub user name"),
    ({"op": "start", "launch": {**LAUNCH, "run_id": "../x"}}, "not a run id"),
    ({"op": "start", "launch": {**LAUNCH, "env": {"A=B": "1"}}}, "not an environment variable"),
    ({"op": "start", "launch": {**LAUNCH, "limits": {**LAUNCH["limits"], "memory_limit": -1}}}, "positive number"),
    ({"op": "stop", "run_id": LAUNCH["run_id"], "ref": "1:None"}, "process 1 is not a runner of run"),
    ({"op": "read_notebook", "owner": "sa-dana", "path": "../../etc/shadow"}, None),
    ({"op": "exec", "argv": ["id"]}, "unknown operation 'exec'"),
])
def test_the_launcher_refuses_what_it_does_not_offer(hub, dana, account_prefix, request_, reason):
    reply = ask_as(service_account(account_prefix), hub, request_)
    if reason is None:  # a path out of the home is the caller's mistake, said as such
        assert "path: a notebook's path relative to your home" in reply["invalid"], reply
    else:
        assert reason in reply["refused"], reply
    assert psutil.pid_exists(1)


def test_a_killed_launcher_comes_back_as_root_and_a_run_in_flight_ends_once(hub, dana):
    run = run_once(dana, notebook("import time; time.sleep(6)", "print('slept')"))
    wait_for(lambda: dana.request("GET", f"services/scheduler/api/runs/{run['id']}")["kernel_ready_at"], 60,
             "the run's kernel to start")
    old = runs_as(hub, "launcher", 0)
    os.kill(old.pid, signal.SIGKILL)
    done = wait_run(dana, run["id"])
    assert done["status"] == "COMPLETED" and done["attempt"] == 1, (done, hub.log_tail())
    assert "slept" in outputs_text(dana.request("GET", f"services/scheduler/api/runs/{run['id']}/files/output.ipynb"))
    new = wait_for(lambda: (p := managed_service_process(hub, MODULES["launcher"])) and p.pid != old.pid and p, 60,
                   f"the hub to start the launcher again\n{hub.log_tail()}")
    assert process_uids(new.pid) == ["0"] * 4
    after = wait_run(dana, run_once(dana, notebook("print('again')"))["id"])
    assert after["status"] == "COMPLETED", after
