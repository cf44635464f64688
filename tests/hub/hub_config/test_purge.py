"""`gpulab down --purge` undoes an install (issue 15 item 13): a real hub as root makes system
accounts, project groups, a projects folder and its data directory, with a server still running
after the hub stopped; the purge removes all of it and keeps the users' homes unless asked."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys

import pytest

from gpulab.hub_config.services.service_account import service_account_name
from tests.support.projects import create_project, project_settings


pytestmark = pytest.mark.root


def purge(hub, *flags: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpulab.hub_config.cli", "down", *flags, "--config", str(hub.settings_file)],
                          capture_output=True, text=True, input=stdin, timeout=120)


def exists(lookup, name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("remove_homes", [False, True], ids=["homes-kept", "homes-removed"])
def test_purge_removes_what_gpulab_made(hub_factory, projects_root, account_prefix, remove_homes):
    prefix = f"{account_prefix}g{int(remove_homes)}-"  # this test's own accounts and groups only
    hub = hub_factory.start({**project_settings(projects_root, prefix, f"pg{int(remove_homes)}"),
                             "spawner": {"local": {"account_prefix": prefix}}})
    for name in ("alice", "bob"):
        hub.create_user(name)
    hub.spawn("alice")
    create_project(hub, "alice", "vision", {"bob": "editor"})
    mlflow = service_account_name(prefix, "mlflow")  # MLflow's own account
    accounts = [a for a in (f"{prefix}alice", f"{prefix}bob", mlflow) if exists(pwd.getpwnam, a)]  # bob never spawned
    groups = [f"{prefix}ppg{int(remove_homes)}-vision-rw", f"{prefix}ppg{int(remove_homes)}-vision-ro"]
    assert all(exists(grp.getgrnam, g) for g in groups) and {f"{prefix}alice", mlflow} <= set(accounts)
    homes = [pwd.getpwnam(a).pw_dir for a in accounts if a != mlflow]
    projects_folder = projects_root / f"pg{int(remove_homes)}"

    refused = purge(hub, "--purge", "--yes")
    assert refused.returncode == 1 and "still answers" in refused.stderr  # never under a running hub
    hub.stop()  # alice's server keeps running, as it does after Ctrl-C
    assert purge(hub, "--purge").returncode == 2  # no terminal and no --yes: nothing happens
    assert hub.data_dir.is_dir()

    flags = ["--purge", "--yes"] + (["--remove-homes"] if remove_homes else [])
    done = purge(hub, *flags)
    assert done.returncode == 0, done.stderr
    for name in accounts:
        assert name in done.stdout and not exists(pwd.getpwnam, name)
    assert all(not exists(grp.getgrnam, g) for g in groups)
    assert not hub.data_dir.exists() and not projects_folder.exists()
    assert homes and all(os.path.isdir(h) != remove_homes for h in homes)
    assert purge(hub, "--purge", "--yes").stdout.strip().endswith("nothing: gpulab left nothing here")
