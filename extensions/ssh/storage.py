"""What the SSH gateway writes, kept where only its account can (its folders and database),
and the upgrade that moves an earlier version's keys and audit log there.

The gateway runs as its own account (config.py), and an account that can open gpulab's
database can read and change every project, schedule and GPU claim in it. So with the default
SQLite storage its two tables live in a file of its own, `<data_dir>/ssh/ssh.sqlite`, in the
folder its account owns; gpulab's database is no longer open to it. With `database.url` set
(PostgreSQL, always on Kubernetes, where the hub is not root and the gateway runs as the hub's
user anyway), the tables stay in that database as before: the URL and its credentials decide.

Keys stored in gpulab's database by an earlier version are moved over once, at the upgrade
`gpulab up` (and `gpulab db-upgrade`) runs as root before the hub starts, so nobody's key stops
working. The move copies what is missing and then deletes the originals, so an upgrade that
was interrupted is finished by the next one. The audit log moves from `logs/ssh-audit.log`
(in the hub's private log folder) to `logs/ssh/audit.log` (a folder of the gateway's own).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from gpulab.db import make_session_factory
from gpulab.db.own_database import give_to_folder_owner, own_database_url, upgrade_own_database

from .lockouts import SSHLockoutRow
from .store import SSHKeyRow

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from gpulab.hub_config.typed_settings import Settings

MIGRATIONS = ["gpulab.extensions.ssh.migrations"]
FILE_NAME = "ssh.sqlite"


def ssh_folder(s: Settings) -> Path:
    """Host key, endpoint master secret and (SQLite) database."""
    return Path(s.hub.data_dir, "ssh")


def audit_folder(s: Settings) -> Path:
    return Path(s.hub.data_dir, "logs", "ssh")


def old_audit_log(s: Settings) -> Path:
    return Path(s.hub.data_dir, "logs", "ssh-audit.log")


def ssh_database_url(s: Settings) -> str:
    """Where the gateway keeps its rows (pure): database.url if set, else its own SQLite file."""
    return own_database_url(s, ssh_folder(s), FILE_NAME)


def upgrade_ssh_storage(s: Settings) -> int:
    """Migrate the gateway's own database and move what an earlier version kept elsewhere into
    its folders; returns how many keys moved. Runs where gpulab's database is migrated (as
    root, before the hub starts and hands the folders to the gateway's account)."""
    if not s.ssh.enabled:
        return 0
    _move_old_audit_log(s)
    return upgrade_own_database(s, ssh_folder(s), FILE_NAME, MIGRATIONS, carry_over)


def carry_over(source: Engine, target: Engine) -> int:
    """Move the SSH rows from `source` (gpulab's database, migrated) to `target`; returns the
    number of keys moved. A key whose id or fingerprint is in `target` already is not copied again."""
    sources, targets = make_session_factory(source), make_session_factory(target)
    with sources() as old:
        keys = list(old.scalars(select(SSHKeyRow)))
        lockouts = list(old.scalars(select(SSHLockoutRow)))
        old.expunge_all()
    if not keys and not lockouts:
        return 0
    with targets() as new:
        have_ids = set(new.scalars(select(SSHKeyRow.id)))
        have_prints = set(new.scalars(select(SSHKeyRow.fingerprint)))
        copied = [row for row in keys if row.id not in have_ids and row.fingerprint not in have_prints]
        for row in copied:
            new.add(_copy(row, SSHKeyRow))
        for row in lockouts:
            new.merge(_copy(row, SSHLockoutRow))
        new.commit()
    with sources() as old:  # only once the copy is committed
        old.execute(delete(SSHKeyRow).where(SSHKeyRow.id.in_([row.id for row in keys])))
        old.execute(delete(SSHLockoutRow).where(SSHLockoutRow.source.in_([row.source for row in lockouts])))
        old.commit()
    return len(copied)


def _move_old_audit_log(s: Settings) -> None:
    old, folder = old_audit_log(s), audit_folder(s)
    if not old.is_file() or old.is_symlink() or (folder / "audit.log").exists():
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.rename(old, folder / "audit.log")
    give_to_folder_owner(folder, ["audit.log"])


def _copy(row, model):
    return model(**{column.key: getattr(row, column.key) for column in model.__table__.columns})
