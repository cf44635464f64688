"""gpulab run by an ordinary user: servers run as that user, and gpulab says there is no isolation."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from gpulab.spawner.accounts import MANAGED_MARKER


pytestmark = pytest.mark.root  # root is needed to create the ordinary user that runs the hub


@pytest.fixture
def hub_user(account_prefix, homes_root):
    name = f"{account_prefix}hubrunner"
    subprocess.run(["useradd", "--create-home", "--home-dir", str(homes_root / name), "--comment", MANAGED_MARKER,
                    "--user-group", name], check=True, capture_output=True)
    yield pwd.getpwnam(name)


def test_servers_run_as_the_hub_user_with_a_warning(hub_factory, hub_user):
    # its own projects root (in its data directory): the session's default one may be root's already
    hub = hub_factory.prepare({"spawner": {"local": {"home_root": ""}}, "projects": {"local": {"root": ""}}})
    hub.workdir = Path(shutil.copytree(hub.workdir, f"{hub_user.pw_dir}/work"))  # where the hub user may write
    subprocess.run(["chown", "-R", f"{hub_user.pw_uid}:{hub_user.pw_gid}", str(hub.workdir)], check=True)
    hub.launcher = ["setpriv", f"--reuid={hub_user.pw_uid}", f"--regid={hub_user.pw_gid}", "--init-groups",
                    "env", f"HOME={hub_user.pw_dir}", f"USER={hub_user.pw_name}"]
    hub.start()

    hub.create_user("solo")
    hub.spawn("solo")
    servers = [p for p in psutil.process_iter(["uids", "cmdline"])
               if any("jupyterhub-singleuser" in part for part in p.info["cmdline"] or [])
               and p.info["uids"].real == hub_user.pw_uid]
    assert len(servers) == 1
    home = hub.data_dir / "homes" / "solo"
    assert servers[0].cwd() == str(home)
    assert os.stat(home).st_mode & 0o777 == 0o700
    assert "WARNING: gpulab is not running as root" in hub.log_path.read_text()
    assert "no isolation between users" in (hub.data_dir / "logs" / "hub.log").read_text()
    hub.stop_server("solo")
