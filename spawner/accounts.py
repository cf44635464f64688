"""System accounts for hub users (local backend, when gpulab runs as root).

Hub user "alice" runs as system account "gpulab-alice" with a private home. Names that
are not plain (e-mail addresses from an identity provider, dots, capitals) keep a
readable stem plus a short hash of the hub name, so two hub users never share one
account. An existing account that gpulab did not create is never reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import re
import subprocess
from pathlib import Path

MAX_ACCOUNT_LENGTH = 32  # useradd's limit on Linux
SAFE_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]*$")
MANAGED_MARKER = "gpulab hub user"


class AccountError(Exception):
    """A hub user that cannot be given a safe system account; the message says why."""


def account_name(hub_name: str, prefix: str) -> str:
    """The system account of hub user `hub_name` (pure)."""
    if not hub_name:
        raise AccountError("an empty username has no system account")
    plain = prefix + hub_name
    if SAFE_ACCOUNT.match(plain) and len(plain) <= MAX_ACCOUNT_LENGTH:
        return plain
    stem = re.sub(r"[^a-z0-9_]+", "-", hub_name.lower()).strip("-")
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:6]
    room = MAX_ACCOUNT_LENGTH - len(prefix) - len(digest) - 1
    stem = stem[:room].rstrip("-")
    name = f"{prefix}{stem}-{digest}" if stem else f"{prefix}{digest}"
    if not SAFE_ACCOUNT.match(name):
        raise AccountError(
            f"hub user {hub_name!r} maps to system account {name!r}, which is not a valid account "
            "name; set spawner.local.account_prefix to a prefix that starts with a letter"
        )
    return name


def home_of(account: str, home_root: Path) -> Path:
    """An existing account's own home (it may have been made under another home_root, before a
    settings change); for an account yet to be made, where its home will be."""
    entry = _lookup(account)
    return Path(entry.pw_dir) if entry is not None else home_root / account


# One lock per account for this process: two spawns of one user must not both run useradd.
_creation_locks: dict[str, asyncio.Lock] = {}


async def ensure_account(account: str, home_root: Path) -> pwd.struct_passwd:
    """The account, created with a private home (mode 0700) on first use.

    Raises AccountError if the account exists but gpulab did not create it (for example
    "root" with an empty prefix).
    """
    lock = _creation_locks.setdefault(account, asyncio.Lock())
    async with lock:
        entry = _lookup(account)
        if entry is None:
            await asyncio.to_thread(_create, account, home_root)
            entry = _lookup(account)
            if entry is None:
                raise AccountError(f"system account {account!r} was not created")
        elif entry.pw_gecos != MANAGED_MARKER:
            raise AccountError(
                f"system account {account!r} already exists and was not created by gpulab; "
                "refusing to run a hub user's server as it"
            )
        elif not os.path.isdir(entry.pw_dir):
            # Its home was deleted: made again, empty and private, rather than let a container
            # engine make it as root or a server fail to enter it.
            await asyncio.to_thread(_make_home, entry)
        return entry


def _lookup(account: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(account)
    except KeyError:
        return None


def _create(account: str, home_root: Path) -> None:
    home_root.mkdir(mode=0o755, parents=True, exist_ok=True)
    home = home_of(account, home_root)
    result = subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
         "--comment", MANAGED_MARKER, "--user-group", account],
        capture_output=True, text=True,
    )
    if result.returncode != 0 and _lookup(account) is None:
        raise AccountError(f"useradd {account} failed: {result.stderr.strip()}")
    os.chmod(home, 0o700)


def _make_home(entry: pwd.struct_passwd) -> None:
    os.makedirs(entry.pw_dir, mode=0o700, exist_ok=True)
    os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    os.chmod(entry.pw_dir, 0o700)


def remove_account(account: str) -> None:
    """Delete a gpulab-created account and its home (used by tests and cleanup tools)."""
    entry = _lookup(account)
    if entry is None or entry.pw_gecos != MANAGED_MARKER:
        return
    subprocess.run(["userdel", "--force", "--remove", account], capture_output=True)
