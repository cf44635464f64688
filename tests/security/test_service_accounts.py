"""The SSH gateway and the culler run as their own accounts, not root (issue 12, least privilege).

A real hub running as root, started on a data directory an earlier gpulab left behind (alice's
SSH key and a lockout in gpulab.sqlite, the audit log in logs/). Checked from outside, as an
operator would: the uid in /proc/<pid>/status of each service process the hub started, what
its account can open (`cat` run as that uid), and stock OpenSSH signing in with the key stored
before the upgrade. Then each service is killed with SIGKILL: the hub starts it again, as its
account again, and it still does its work (a sign-in; an idle server culled).
"""

from __future__ import annotations

import os
import pwd
import signal
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

from gpulab.db import make_engine
from gpulab.db.migrate import upgrade
from gpulab.hub_config.services.service_account import MARKER, service_account_name
from gpulab.extensions.ssh.lockouts import LockoutStore
from gpulab.extensions.ssh.publickeys import parse_public_key
from gpulab.extensions.ssh.store import KeyStore
from gpulab.spawner.accounts import account_name
from tests.support.hub import can_read_as, managed_service_process, process_uids, wait_for
from tests.support.ssh import OpenSSH, known_hosts, make_key

pytestmark = pytest.mark.root

SETTINGS = {
    "profiles": [{"id": "cpu", "display_name": "CPU", "default": True},
                 {"id": "short", "display_name": "CPU, culled fast", "idle_timeout": 2}],
    "culling": {"check_interval": 1},
    "mlflow": {"enabled": False},  # not under test here (test_mlflow_isolation.py)
}
MODULES = {"ssh": "gpulab.extensions.ssh.service", "culler": "gpulab.extensions.culler.service"}
OLD_AUDIT_LINE = "login identity=alice login=alice source=127.0.0.1 method=publickey (before the upgrade)"
FAR_FUTURE = 4_000_000_000.0


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    return {"alice": make_key(folder, "alice")}


@pytest.fixture(scope="module")
def hub(module_hub_factory, keys):
    hub = module_hub_factory.prepare(SETTINGS, name="accounts")
    old_install(hub.data_dir, keys["alice"].with_suffix(".pub").read_text())
    hub.start()
    for name in ("alice", "bob"):
        hub.create_user(name)
    hub.spawn("alice")
    return hub


def old_install(data_dir: Path, alice_key: str) -> None:
    """What an earlier gpulab left: SSH rows in gpulab.sqlite (written as it did, by its
    KeyStore and LockoutStore on that database) and the audit log beside the hub's logs."""
    (data_dir / "logs").mkdir(parents=True, mode=0o700)
    url = f"sqlite:///{data_dir / 'gpulab.sqlite'}"
    upgrade(url)
    KeyStore(make_engine(url)).add("alice", parse_public_key(alice_key))
    LockoutStore(make_engine(url)).lock("source:203.0.113.7", FAR_FUTURE)
    (data_dir / "logs" / "ssh-audit.log").write_text(OLD_AUDIT_LINE + "\n")


def accounts(account_prefix) -> dict[str, pwd.struct_passwd]:
    return {name: pwd.getpwnam(service_account_name(account_prefix, name)) for name in MODULES}


def service_process(hub, name: str) -> psutil.Process | None:
    return managed_service_process(hub, MODULES[name])


def ssh_as_alice(hub, keys, tmp_path) -> subprocess.CompletedProcess:
    client = OpenSSH(hub.ports["ssh"], known_hosts(hub, hub.ports["ssh"], tmp_path), keys["alice"])
    return client.ssh("alice", "id -un")


def assert_runs_as_its_account(hub, name: str, account: pwd.struct_passwd) -> psutil.Process:
    process = wait_for(lambda: service_process(hub, name), 60, f"the {name} service process")
    assert process_uids(process.pid) == [str(account.pw_uid)] * 4  # real, effective, saved, file system
    return process


# ------------------------------------------------------------ the accounts


def test_the_gateway_and_the_culler_run_as_their_own_accounts(hub, account_prefix):
    for name, account in accounts(account_prefix).items():
        assert account.pw_uid != 0 and account.pw_gecos == MARKER and account.pw_shell.endswith(("nologin", "false"))
        assert_runs_as_its_account(hub, name, account)
    found = accounts(account_prefix)
    assert found["ssh"].pw_uid != found["culler"].pw_uid


def test_their_accounts_cannot_open_gpulabs_database_the_hubs_secrets_or_a_users_home(hub, account_prefix):
    alice = pwd.getpwnam(account_name("alice", account_prefix))
    secret = Path(alice.pw_dir) / "private.txt"
    subprocess.run(["sh", "-c", f"umask 077; echo mine > {secret}"], user=alice.pw_uid, group=alice.pw_gid,
                   check=True)
    private = [hub.data_dir / "state" / "gpulab.sqlite", hub.data_dir / "jupyterhub.sqlite",
               hub.data_dir / "jupyterhub_cookie_secret", secret]
    for path in private:
        assert path.exists() and can_read_as(pwd.getpwuid(0), path), path  # the check can succeed
    for name, account in accounts(account_prefix).items():
        for path in private:
            assert not can_read_as(account, path), (name, path)
    gateway, culler = accounts(account_prefix)["ssh"], accounts(account_prefix)["culler"]
    own = hub.data_dir / "ssh" / "ssh.sqlite"
    assert can_read_as(gateway, own) and not can_read_as(culler, own)
    assert (os.stat(hub.data_dir / "ssh").st_uid, os.stat(hub.data_dir / "ssh").st_mode & 0o777) == (
        gateway.pw_uid, 0o700)


# ------------------------------------------------------------ the upgrade


def test_a_key_stored_before_the_upgrade_still_signs_in(hub, keys, tmp_path, account_prefix):
    result = ssh_as_alice(hub, keys, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == account_name("alice", account_prefix)
    with sqlite3.connect(hub.data_dir / "state" / "gpulab.sqlite") as old:  # moved, not copied
        assert old.execute("SELECT count(*) FROM ssh_keys").fetchone() == (0,)
    with sqlite3.connect(hub.data_dir / "ssh" / "ssh.sqlite") as new:
        assert new.execute("SELECT username FROM ssh_keys").fetchall() == [("alice",)]
        assert new.execute("SELECT source FROM ssh_lockouts").fetchall() == [("source:203.0.113.7",)]
    audit = (hub.data_dir / "logs" / "ssh" / "audit.log").read_text().splitlines()
    assert audit[0] == OLD_AUDIT_LINE and any("login identity=alice" in line for line in audit[1:])
    assert not (hub.data_dir / "logs" / "ssh-audit.log").exists()


# ------------------------------------------------------------ kill -9


def restarted(hub, name: str, account: pwd.struct_passwd) -> psutil.Process:
    old = assert_runs_as_its_account(hub, name, account)
    os.kill(old.pid, signal.SIGKILL)
    new = wait_for(lambda: (p := service_process(hub, name)) and p.pid != old.pid and p, 60,
                   f"the hub to start {name} again\n{hub.log_tail()}")
    assert process_uids(new.pid) == [str(account.pw_uid)] * 4
    assert f"Service {name} died (status -9) and is being started again" in hub.log_path.read_text(errors="replace")
    return new


def test_a_killed_gateway_comes_back_as_its_account_and_signs_in(hub, keys, tmp_path, account_prefix):
    restarted(hub, "ssh", accounts(account_prefix)["ssh"])
    result = wait_for(lambda: (r := ssh_as_alice(hub, keys, tmp_path)).returncode == 0 and r, 60,
                      "a sign-in through the restarted gateway")
    assert result.stdout.decode().strip() == account_name("alice", account_prefix)


def test_a_killed_culler_comes_back_as_its_account_and_culls(hub, account_prefix):
    restarted(hub, "culler", accounts(account_prefix)["culler"])
    hub.spawn("bob", options={"profile": "short"})
    wait_for(lambda: hub.server_model("bob") is None, 60, f"bob's idle server to be culled\n{hub.log_tail()}")
    assert "culling bob (profile short): idle for" in hub.log_tail(2000)
    assert hub.server_model("alice")["ready"]  # no idle timeout: kept
