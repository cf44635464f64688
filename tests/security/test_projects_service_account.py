"""The projects service runs as its own account; only its root helper changes folders (issue 12).

A real hub running as root, started on a data directory an earlier gpulab left behind: the
project "vision" (alice maintainer, bob editor) in gpulab.sqlite and its folder with a file
in it, made as the root service made them. Checked from outside: the uid in /proc of the
service and of the helper, what the service's account can open (`cat` as that uid), who can
reach the helper's socket, what the helper refuses, the old project's members and folder
after the upgrade, and a kill -9 of each process: the hub starts it again and it works.
"""

from __future__ import annotations

import os
import pwd
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade
from gpulab.extensions.projects.storage.helper import HelperStorage
from gpulab.extensions.projects.storage.local import LocalStorage
from gpulab.extensions.projects.store import ProjectStore
from gpulab.hub_config.services.service_account import MARKER, service_account_name
from tests.support.hub import (
    can_read_as, managed_service_process, process_uids, run_as_account, service_runs_as, wait_for,
)
from tests.support.projects import Person, account, project_settings

pytestmark = pytest.mark.root

MODULES = {"service": "gpulab.extensions.projects.service", "helper": "gpulab.extensions.projects.storage.helper"}
OLD_NOTE = "written before the upgrade\n"


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    settings = {**project_settings(projects_root, account_prefix, "sa", reconcile_interval=5),
                "mlflow": {"enabled": False}, "ssh": {"enabled": False}}
    hub = module_hub_factory.prepare(settings, name="projsvc")
    old_install(hub)
    return hub.start()


@pytest.fixture(scope="module")
def people(hub):
    people = {name: Person(hub, name) for name in ("alice", "bob", "carol")}
    for name in people:
        hub.spawn(name)
    return people


def old_install(hub) -> None:
    """What an earlier gpulab left: the project's rows in gpulab.sqlite, its folder and system groups."""
    hub.data_dir.mkdir(parents=True, mode=0o700)
    url = f"sqlite:///{hub.data_dir / 'gpulab.sqlite'}"
    upgrade(url)
    store = ProjectStore(make_session_factory(make_engine(url)), lambda: datetime.now(timezone.utc))
    store.create("vision", "computer vision", "alice")
    store.add_member("vision", "user", "bob", "editor", "alice", lambda project: None)
    projects, accounts = hub.settings["projects"]["local"], hub.settings["spawner"]["local"]
    storage = LocalStorage(Path(projects["root"]), projects["group_prefix"], accounts["account_prefix"],
                           accounts["home_root"], str(hub.data_dir))
    storage.apply_project("vision", {"alice": "maintainer", "bob": "editor"})
    (storage.folder("vision") / "notes.md").write_text(OLD_NOTE)


def service_account(account_prefix) -> pwd.struct_passwd:
    return pwd.getpwnam(service_account_name(account_prefix, "projects"))


def process_of(hub, name: str) -> psutil.Process | None:
    return managed_service_process(hub, MODULES[name])


def runs_as(hub, name: str, uid: int) -> psutil.Process:
    return service_runs_as(hub, MODULES[name], uid)


CONNECT = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')"


def socket_file(hub) -> Path:
    return hub.data_dir / "projects-storage" / "storage.sock"


def folder(hub, slug: str) -> Path:
    return Path(hub.settings["projects"]["local"]["root"], slug, "files")


def setpriv(hub, user: str, *command: str) -> subprocess.CompletedProcess:
    entry = account(hub, user)
    return subprocess.run(["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups",
                           *command], capture_output=True, text=True)


# ------------------------------------------------------------ who runs as whom


def test_the_service_runs_as_its_own_account_and_only_the_helper_as_root(hub, account_prefix):
    entry = service_account(account_prefix)
    assert entry.pw_uid != 0 and entry.pw_gecos == MARKER and entry.pw_shell.endswith(("nologin", "false"))
    runs_as(hub, "service", entry.pw_uid)
    runs_as(hub, "helper", 0)


def test_its_account_cannot_open_gpulabs_database_the_hubs_secrets_a_home_or_a_project(hub, people, account_prefix):
    alice = account(hub, "alice")
    secret = Path(alice.pw_dir) / "private.txt"
    subprocess.run(["sh", "-c", f"umask 077; echo mine > {secret}"], user=alice.pw_uid, group=alice.pw_gid,
                   check=True)
    private = [hub.data_dir / "state" / "gpulab.sqlite", hub.data_dir / "jupyterhub.sqlite",
               hub.data_dir / "jupyterhub_cookie_secret", secret, folder(hub, "vision") / "notes.md"]
    entry = service_account(account_prefix)
    for path in private:
        assert path.exists() and can_read_as(pwd.getpwuid(0), path), path  # the check can succeed
        assert not can_read_as(entry, path), path
    own = hub.data_dir / "projects-service" / "projects.sqlite"
    assert can_read_as(entry, own)
    assert (os.stat(own.parent).st_uid, os.stat(own.parent).st_mode & 0o777) == (entry.pw_uid, 0o700)


def test_only_the_services_account_reaches_the_helper(hub, people, account_prefix):
    path = str(socket_file(hub))
    reached = run_as_account(service_account(account_prefix), sys.executable, "-c", CONNECT, path)
    assert reached.returncode == 0 and reached.stdout.strip() == "connected", reached.stderr
    for other in (account(hub, "alice"), pwd.getpwnam("nobody")):
        refused = run_as_account(other, sys.executable, "-c", CONNECT, path)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, (other.pw_name, refused)


def test_the_helper_refuses_a_malformed_request(hub):
    helper = HelperStorage(socket_file(hub), wait=10)
    outside = Path(hub.settings["projects"]["local"]["root"]).parent / "x"
    assert helper.send({"op": "apply_project", "slug": "../x", "members": {"alice": "maintainer"}}) == {
        "refused": "not a project name: '../x'"}
    assert not outside.exists()
    assert "unknown operation 'apply_user'" in helper.send({"op": "apply_user", "slug": "vision"})["refused"]
    assert "unknown role 'owner'" in helper.send(
        {"op": "apply_project", "slug": "vision", "members": {"carol": "owner"}})["refused"]
    assert "refused a request: not a project name: '../x'" in hub.log_path.read_text(errors="replace")
    assert setpriv(hub, "alice", "cat", str(folder(hub, "vision") / "notes.md")).stdout == OLD_NOTE  # untouched


# ------------------------------------------------------------ the upgrade


def test_a_project_made_before_the_upgrade_keeps_its_members_and_its_folder(hub, people):
    project = people["alice"].api("GET", "/vision")
    assert {(m["name"], m["role"]) for m in project["members"]} == {("alice", "maintainer"), ("bob", "editor")}
    with sqlite3.connect(hub.data_dir / "state" / "gpulab.sqlite") as old:  # moved, not copied
        assert old.execute("SELECT count(*) FROM projects").fetchone() == (0,)
    with sqlite3.connect(hub.data_dir / "projects-service" / "projects.sqlite") as new:
        assert new.execute("SELECT slug FROM projects").fetchall() == [("vision",)]
    assert setpriv(hub, "alice", "cat", str(folder(hub, "vision") / "notes.md")).stdout == OLD_NOTE
    written = setpriv(hub, "bob", "sh", "-c", f"echo from bob > {folder(hub, 'vision')}/bob.md")
    assert written.returncode == 0, written.stderr
    assert setpriv(hub, "carol", "cat", str(folder(hub, "vision") / "notes.md")).returncode != 0  # not a member


# ------------------------------------------------------------ kill -9


def restarted(hub, name: str, uid: int) -> psutil.Process:
    old = runs_as(hub, name, uid)
    os.kill(old.pid, signal.SIGKILL)
    new = wait_for(lambda: (p := process_of(hub, name)) and p.pid != old.pid and p, 60,
                   f"the hub to start the projects {name} again\n{hub.log_tail()}")
    assert process_uids(new.pid) == [str(uid)] * 4
    return new


def creates_a_shared_folder(hub, people, slug: str) -> None:
    created = wait_for(lambda: _create(people["alice"], slug), 60, f"project {slug} to be created\n{hub.log_tail()}")
    assert created["name"] == slug
    people["alice"].api("POST", f"/{slug}/members", {"name": "bob", "role": "viewer"})
    wait_for(lambda: folder(hub, slug).is_dir(), 30, f"the folder of {slug}")
    assert oct(folder(hub, slug).stat().st_mode & 0o7777) == "0o2770" and folder(hub, slug).stat().st_uid == 0


def _create(person, slug: str):
    try:
        return person.api("POST", "", {"name": slug, "description": ""})
    except Exception:  # the service is still starting
        return None


def test_a_killed_service_comes_back_as_its_account_and_works(hub, people, account_prefix):
    restarted(hub, "service", service_account(account_prefix).pw_uid)
    creates_a_shared_folder(hub, people, "after-service")


def test_a_killed_helper_comes_back_as_root_and_works(hub, people):
    restarted(hub, "helper", 0)
    log = hub.log_path.read_text(errors="replace")  # gpulab's poll's words, or JupyterHub's if it saw it first
    assert ("Service projects-storage died (status -9) and is being started again" in log
            or "Service projects-storage exited with status -9" in log)
    creates_a_shared_folder(hub, people, "after-helper")
    wait_for(lambda: setpriv(hub, "alice", "ls", str(folder(hub, "after-helper"))).returncode == 0, 30,
             "alice to reach the new folder")
