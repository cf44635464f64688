"""A managed service that runs as its own system account when the hub runs as root.

JupyterHub starts a managed service as the account its spec names in `user` (through the
same setuid step it uses for local servers), but that account must exist first, and only
the running hub knows whether it is root. So a service declares its account in its spec's
environment at configuration time (config.add_managed_service(run_as=...), pure), and the
hub, when its configuration is loaded (config.pass_hub_environment, in the hub's process,
before any service starts), calls `prepare` and sets `user` if it runs as root:

1. the account is created if missing (system account, no login shell, no home; marked, so
   that an account gpulab did not make, or a hub user's, is never taken over);
2. it is handed its folders (created if missing, owned by it, mode 0700; the contents are
   moved over once, never through links);
3. it may pass through the folders above them that it could not (one POSIX ACL entry,
   search only, written as an extended attribute: no `setfacl` needed); when that opens the folder's private parent (the hub's data directory),
   the other users' bits come off the entries beside the folder first, so passing through
   opens nothing else there (the hub's databases are created 0644; config.py creates
   JupyterHub's, which does not exist yet on a first start, private beforehand).

When the hub is not root, nothing changes: the service runs as the hub's user, as before.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpulab.spawner.accounts import SAFE_ACCOUNT

MARKER = "gpulab service account"
NO_LOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


class ServiceAccountError(Exception):
    """The service's account cannot be made or used safely; the message says why."""


@dataclass(frozen=True)
class ServiceAccount:
    """A service's own account (`name`) and the folders it owns (absolute paths)."""

    name: str
    owns: tuple[str, ...] = ()


def service_account_name(account_prefix: str, service: str) -> str:
    """An account no hub user can be given (pure).

    Hub user X runs as `<account_prefix>X` (gpulab.spawner.accounts), so any name that starts
    with the prefix could be a hub user's. This one differs from the prefix at its last
    character: "gpulab-" gives "gpulab_svc-mlflow".
    """
    last = "_" if account_prefix[-1:] != "_" else "-"
    for name in (f"{account_prefix[:-1]}{last}svc-{service}", f"gpulab_svc-{service}", f"_gpulab_svc-{service}"):
        if SAFE_ACCOUNT.match(name) and len(name) <= 32 and not name.startswith(account_prefix):
            return name
    raise ServiceAccountError(f"no account name for service {service!r} avoids prefix {account_prefix!r}")


def prepare(account: ServiceAccount) -> pwd.struct_passwd:
    """Create the account if needed and hand it its folders (as root, in the hub, at start-up)."""
    entry = ensure_account(account.name)
    for folder in account.owns:
        hand_over(Path(folder), entry)
    return entry


def ensure_account(name: str) -> pwd.struct_passwd:
    entry = _lookup(name)
    if entry is None:
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", _no_login_shell(), "--comment", MARKER, name],
            capture_output=True, text=True,
        )
        entry = _lookup(name)
        if entry is None:
            raise ServiceAccountError(f"useradd {name} failed: {result.stderr.strip()}")
    if entry.pw_gecos != MARKER or entry.pw_uid == 0:
        raise ServiceAccountError(
            f"system account {name!r} exists and is not a gpulab service account; refusing to run a service as it"
        )
    return entry


def hand_over(folder: Path, entry: pwd.struct_passwd) -> None:
    """`folder` owned by the account, mode 0700, reachable by it; its neighbours closed to others."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ServiceAccountError(f"{folder} must be a folder, not a link or a file")
    if info.st_uid != entry.pw_uid:
        _give_tree(folder, entry.pw_uid, entry.pw_gid)  # once: afterwards the top is the account's
    os.chmod(folder, 0o700, follow_symlinks=False)
    for parent in _unsearchable_parents(folder, entry):
        if parent == folder.parent:
            close_neighbours(folder)
        try:
            let_through(parent, entry.pw_uid)
        except OSError as exc:
            raise ServiceAccountError(f"cannot let {entry.pw_name} pass through {parent}: {exc}") from None


def let_through(folder: Path, uid: int) -> None:
    """Add search permission for `uid` to the folder's ACL (as `setfacl -m u:<uid>:x` does:
    the other entries kept, the mask recomputed; `chmod` clears the mask, so this is redone at
    each start)."""
    from gpulab.extensions.projects.storage import acl  # the kernel's ACL format, shared

    entries = acl.get_acl(folder)
    if not entries:  # no ACL yet: its mode bits are one
        mode = os.stat(folder).st_mode
        entries = [acl.Entry(acl.USER_OBJ, acl.UNDEFINED_ID, (mode >> 6) & 7),
                   acl.Entry(acl.GROUP_OBJ, acl.UNDEFINED_ID, (mode >> 3) & 7),
                   acl.Entry(acl.OTHER, acl.UNDEFINED_ID, mode & 7)]
    granted = {(e.tag, e.id): e.perm for e in entries if e.tag != acl.MASK}
    granted[(acl.USER, uid)] = granted.get((acl.USER, uid), 0) | 1
    mask = 0
    for (tag, _), perm in granted.items():
        if tag in (acl.GROUP_OBJ, acl.USER, acl.GROUP):
            mask |= perm
    updated = [acl.Entry(tag, ident, perm) for (tag, ident), perm in granted.items()]
    acl.set_acl(folder, sorted([*updated, acl.Entry(acl.MASK, acl.UNDEFINED_ID, mask)]))


def close_neighbours(folder: Path) -> None:
    """Take the other users' bits off the entries beside `folder` (its parent is passed through)."""
    with os.scandir(folder.parent) as entries:
        for item in entries:
            if item.name == folder.name or item.is_symlink():
                continue
            mode = item.stat(follow_symlinks=False).st_mode
            if mode & 0o007:
                os.chmod(item.path, stat.S_IMODE(mode) & ~0o007, follow_symlinks=False)


def _give_tree(folder: Path, uid: int, gid: int) -> None:
    # Bottom-up and never through links; the top last, so an interrupted hand-over is redone.
    for root, dirs, files in os.walk(folder, topdown=False, followlinks=False):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    os.chown(folder, uid, gid, follow_symlinks=False)


def _unsearchable_parents(folder: Path, entry: pwd.struct_passwd) -> list[Path]:
    groups = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    blocked = []
    for parent in folder.parents:
        info = os.stat(parent)
        if info.st_uid == entry.pw_uid:
            can = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            can = info.st_mode & stat.S_IXGRP
        else:
            can = info.st_mode & stat.S_IXOTH
        if not can:  # (an ACL entry may let it through already; setting it again is harmless)
            blocked.append(parent)
    return blocked


def _no_login_shell() -> str:
    return next((shell for shell in NO_LOGIN_SHELLS if os.path.exists(shell)), "/bin/false")


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def remove_service_account(name: str) -> None:
    """Delete a gpulab service account (tests and cleanup tools)."""
    entry = _lookup(name)
    if entry is not None and entry.pw_gecos == MARKER:
        subprocess.run(["userdel", "--force", name], capture_output=True)
