"""The account MLflow runs as: made and handed its folder by the hub, with real system accounts
and real files (root only). The hub's side end to end: test_mlflow_isolation.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gpulab.hub_config.services.service_account import (
    ServiceAccount,
    ServiceAccountError,
    ensure_account,
    let_through,
    prepare,
    remove_service_account,
    service_account_name,
)
from gpulab.spawner.accounts import account_name, ensure_account as ensure_user_account

pytestmark = pytest.mark.root


@pytest.fixture
def base():
    """A folder under /tmp anyone may pass through (pytest's own root is private; see
    tests/support/service_accounts.py)."""
    folder = Path(tempfile.mkdtemp(prefix="gpulab-test-service-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def account(account_prefix):
    name = service_account_name(account_prefix, "unit")
    yield name
    remove_service_account(name)


def test_an_existing_data_folder_is_handed_over_without_following_links(base, account):
    data_dir = base / "data"
    folder = data_dir / "mlflow"
    (folder / "artifacts" / "1").mkdir(parents=True)
    (folder / "mlflow.sqlite").write_text("db")
    outside = base / "outside.txt"
    outside.write_text("root's")
    (folder / "artifacts" / "1" / "link").symlink_to(outside)
    data_dir.chmod(0o700)
    (data_dir / "hub.sqlite").write_text("hub")
    (data_dir / "hub.sqlite").chmod(0o644)

    entry = prepare(ServiceAccount(account, (str(folder),)))

    for path in (folder, folder / "artifacts", folder / "artifacts" / "1", folder / "mlflow.sqlite"):
        assert os.lstat(path).st_uid == entry.pw_uid, path
    assert os.lstat(folder / "artifacts" / "1" / "link").st_uid == entry.pw_uid
    assert os.stat(outside).st_uid == 0  # the link's target stays root's
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert os.stat(data_dir / "hub.sqlite").st_mode & 0o777 == 0o640  # closed before the data dir is passed through
    as_account = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "capture_output": True}
    assert subprocess.run(["cat", str(folder / "mlflow.sqlite")], **as_account).returncode == 0
    assert subprocess.run(["cat", str(data_dir / "hub.sqlite")], **as_account).returncode != 0
    assert subprocess.run(["ls", str(data_dir)], **as_account).returncode != 0  # pass through, not list


def test_letting_through_survives_a_chmod_when_redone_and_matches_setfacl(base, account):
    entry = ensure_account(account)
    ours, theirs = base / "ours", base / "theirs"
    for folder in (ours, theirs):
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)
    let_through(ours, entry.pw_uid)
    subprocess.run(["setfacl", "-m", f"u:{entry.pw_uid}:x", str(theirs)], check=True)
    getfacl = ["getfacl", "--omit-header", "--numeric"]
    assert subprocess.run([*getfacl, str(ours)], capture_output=True, text=True).stdout == \
        subprocess.run([*getfacl, str(theirs)], capture_output=True, text=True).stdout
    ours.chmod(0o700)  # what the hub's data directory gets at every start: the mask is cleared
    let_through(ours, entry.pw_uid)
    (ours / "inner").mkdir(mode=0o755)
    as_account = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "capture_output": True}
    assert subprocess.run(["test", "-d", str(ours / "inner")], **as_account).returncode == 0


def test_a_hub_users_account_is_never_taken_for_a_service(account_prefix, homes_root):
    user_account = account_name("svc-unit", account_prefix)
    asyncio.run(ensure_user_account(user_account, homes_root))
    with pytest.raises(ServiceAccountError, match="not a gpulab service account"):
        ensure_account(user_account)
    with pytest.raises(ServiceAccountError):
        ensure_account("root")


def test_a_link_in_place_of_the_folder_is_refused(base, account):
    (base / "elsewhere").mkdir()
    (base / "mlflow").symlink_to(base / "elsewhere")
    with pytest.raises(ServiceAccountError, match="not a link"):
        prepare(ServiceAccount(account, (str(base / "mlflow"),)))
    assert Path(base / "elsewhere").stat().st_uid == 0
