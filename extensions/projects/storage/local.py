"""Project folders on this machine: one folder per project, shared through groups and ACLs.

Layout under the project root (`projects.local.root`):

    <root>/                 root, 0711: members can pass through, nobody can list projects
    <root>/<slug>/          the gate: root, 0700 plus one ACL entry `user:<account>:--x` per member
    <root>/<slug>/files/    the shared folder: root:<slug>-rw, setgid, 2770, with the ACL and
                            default ACL  group:<slug>-rw:rwx  group:<slug>-ro:r-x  other:---
    ~/projects/<slug>       a symlink to <root>/<slug>/files in each member's home

Why two levels. Group membership reaches a process only when it starts, and stays until
it ends, so groups alone cannot take access away from a running server. The gate is
checked on every path lookup, so shutting it (removing the member's ACL entry) takes
effect at once for all of that account's processes. Inside, the groups and the default
ACL decide read or write, and new files inherit them, so a file one editor writes stays
writable by the others (no setgid-and-umask drift, tljh#986).

The gate stays shut for an account whose running processes still hold a group its role
no longer grants (an editor demoted to viewer still carries `-rw`); it opens again when
those processes have ended, i.e. after the server restarts. A file's owner may always
write it, so when someone loses write access the files they own in the folder are given
to root (the editors' group keeps its access through the ACL). Everything here runs as root
in the projects storage helper (helper.py: the service itself runs as its own account) or in
the hub's spawn hook, under one lock file, so the two never interleave. Without root there
are no accounts to separate: folders and links only.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pwd
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpulab.hub_config.services.errors import Conflict
from gpulab.spawner.accounts import MANAGED_MARKER, account_name, home_of

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from ..service_settings import StorageSettings

from . import acl, bridge
from .system_groups import (add_member, delete_group, ensure_group, gid_of, group_name, held_groups, members_of,
                            remove_member, set_members)

log = logging.getLogger("gpulab.projects")

WRITE_ROLES = ("editor", "maintainer")
LINKS_FOLDER = "projects"  # ~/projects/<slug>
LOCK_FILE = ".lock"
TRASH = ".trash"
SHARED = "files"


def access_of(role: str) -> str:
    return "rw" if role in WRITE_ROLES else "ro"


def default_root(setting: str, data_dir: str, isolated: bool) -> Path:
    """`projects.local.root`, or /srv/gpulab/projects as root and <data_dir>/projects otherwise."""
    if setting:
        return Path(setting)
    return Path("/srv/gpulab/projects") if isolated else Path(data_dir or ".", "projects")


def storage_from_settings(given: StorageSettings | Mapping[str, Any]) -> "LocalStorage":
    """The storage that projects.config.storage_settings describes (no I/O)."""
    from ..service_settings import StorageSettings

    settings = StorageSettings.of(given)
    root = default_root(settings.root, settings.data_dir, os.geteuid() == 0)
    return LocalStorage(root, settings.group_prefix, settings.account_prefix, settings.home_root, settings.data_dir)


class LocalStorage:
    def __init__(self, root: Path, group_prefix: str, account_prefix: str, home_root: str = "",
                 data_dir: str = "", isolated: bool | None = None):
        self.root = Path(root)
        self.group_prefix = group_prefix
        self.account_prefix = account_prefix
        self.home_root = home_root
        self.data_dir = data_dir
        self._isolated = isolated

    @property
    def isolated(self) -> bool:
        return os.geteuid() == 0 if self._isolated is None else self._isolated

    # ------------------------------------------------------------ names and places

    def folder(self, slug: str) -> Path:
        return self.root / slug / SHARED

    def groups(self, slug: str) -> dict[str, str]:
        return {access: group_name(self.group_prefix, slug, access) for access in ("rw", "ro")}

    def account(self, user: str) -> pwd.struct_passwd | None:
        """The system account of hub user `user`, if gpulab created it (as the spawner does)."""
        try:
            entry = pwd.getpwnam(account_name(user, self.account_prefix))
        except (KeyError, ValueError):
            return None
        return entry if entry.pw_gecos == MANAGED_MARKER else None

    def home(self, user: str) -> Path:
        """The user's home, where the spawner puts it (spawner/backends/local/spawner.py)."""
        if self.isolated:
            return home_of(account_name(user, self.account_prefix), Path(self.home_root or "/home"))
        return Path(self.home_root or Path(self.data_dir or ".", "homes")) / account_name(user, "")

    def _homes(self) -> list[tuple[Path, int, int]]:
        """Every home gpulab manages, with its owner (to sweep links of people who left)."""
        if self.isolated:
            return [(Path(e.pw_dir), e.pw_uid, e.pw_gid) for e in pwd.getpwall()
                    if e.pw_gecos == MANAGED_MARKER and e.pw_name.startswith(self.account_prefix)]
        base = Path(self.home_root or Path(self.data_dir or ".", "homes"))
        if not base.is_dir():
            return []
        return [(p, os.geteuid(), os.getegid()) for p in base.iterdir() if p.is_dir() and not p.is_symlink()]

    # ------------------------------------------------------------ the lock shared with the hub

    @contextmanager
    def _locked(self):
        self._ensure_root()
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_root(self) -> None:
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(self.root, 0o711 if self.isolated else 0o700)

    # ------------------------------------------------------------ projects

    def check_available(self, slug: str) -> None:
        """Refuse a new project whose folder or system groups exist already (never adopt them)."""
        if (self.root / slug).exists():
            raise Conflict(f"a folder for {slug!r} already exists at {self.root / slug}; move it away first")
        if self.isolated:
            for name in self.groups(slug).values():
                if gid_of(name) is not None:
                    raise Conflict(f"system group {name} already exists; remove it or choose another project name")

    def apply_project(self, slug: str, members: dict[str, str]) -> None:
        """Make the folder, groups, gate and links match `members` (hub user -> role)."""
        with self._locked():
            gids = self._provision(slug)
            accounts = {user: self.account(user) for user in members} if self.isolated else {}
            if self.isolated:
                present = {user: entry for user, entry in accounts.items() if entry is not None}
                writers = {e.pw_name for u, e in present.items() if access_of(members[u]) == "rw"}
                lost_write = members_of(self.groups(slug)["rw"]) - writers
                set_members(self.groups(slug)["rw"], writers)
                set_members(self.groups(slug)["ro"], {e.pw_name for e in present.values()} - writers)
                self._write_gate(slug, {u: members[u] for u in present}, present, gids)
                self._disown(slug, lost_write)
                self._bridge_running(slug, {u: members[u] for u in present}, present, gids)
            wanted = set(members)
            for home, uid, gid in self._homes():
                user = self._user_of_home(home, members)
                self._sync_links(home, uid, gid, {slug} if user in wanted else set(), {slug})

    def apply_user(self, user: str, roles: dict[str, str]) -> None:
        """Before a spawn: the user's groups, gate entries and links for every existing project."""
        if not self.root.is_dir():
            return  # no project was ever created here
        with self._locked():
            existing = {p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
                        and (p / SHARED).is_dir()}
            entry = self.account(user) if self.isolated else None
            if self.isolated and entry is None:
                return  # the spawner creates the account first; nothing to give a missing one
            if entry is not None:
                for slug in sorted(existing):
                    role = roles.get(slug)
                    names = self.groups(slug)
                    for access, name in names.items():
                        self._set_one_member(name, entry.pw_name, role is not None and access_of(role) == access)
                    gids = {access: gid_of(name) for access, name in names.items()}
                    self._update_gate_entry(slug, entry, role, gids)
                    self._bridge_running(slug, {user: role} if role else {}, {user: entry} if role else {}, gids,
                                         only={entry.pw_uid})
            home = self.home(user)
            uid, gid = (entry.pw_uid, entry.pw_gid) if entry else (os.geteuid(), os.getegid())
            if home.is_dir():
                self._sync_links(home, uid, gid, set(roles) & existing, None)

    def remove_project(self, slug: str, members: list[str]) -> None:
        """Move the folder to <root>/.trash (nothing is lost), drop its groups and every link to it."""
        with self._locked():
            for home, uid, gid in self._homes():
                self._sync_links(home, uid, gid, set(), {slug})
            if (self.root / slug).exists():
                trash = self.root / TRASH
                trash.mkdir(mode=0o700, exist_ok=True)
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
                # A name no earlier deletion took (a project re-created and deleted within the same
                # second once collided here, failing half-way); the folder replaces mkdtemp's empty one.
                target = Path(tempfile.mkdtemp(prefix=f"{slug}-{stamp}-", dir=trash))
                os.rename(self.root / slug, target)
                log.info("moved the folder of deleted project %s to %s", slug, target)
            if self.isolated:
                for name in self.groups(slug).values():
                    delete_group(name)

    # ------------------------------------------------------------ folders

    def _provision(self, slug: str) -> dict[str, int]:
        gate, shared = self.root / slug, self.folder(slug)
        gate.mkdir(mode=0o700, exist_ok=True)
        shared.mkdir(mode=0o700, exist_ok=True)
        if not self.isolated:
            return {}
        gids = {access: ensure_group(name) for access, name in self.groups(slug).items()}
        os.chown(gate, 0, 0)
        os.chown(shared, 0, gids["rw"])
        os.chmod(shared, 0o2770)
        inside = acl.build("rwx", "rwx", "---", groups={gids["rw"]: "rwx", gids["ro"]: "r-x"})
        for kind in (acl.ACCESS, acl.DEFAULT):
            entries = inside
            for uid, bits in acl.user_entries(acl.get_acl(shared, kind)).items():
                entries = acl.with_user(entries, uid, bits)  # members bridged in (bridge.py) stay so
            acl.set_acl(shared, entries, kind)
        return gids

    def _disown(self, slug: str, accounts: set[str]) -> None:
        """Give what these accounts wrote in the folder to root: an owner can always write their own
        files whatever their groups, so someone who lost write access must not keep owning any."""
        uids = set()
        for name in accounts:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
        if not uids:
            return
        for folder, dirs, files in os.walk(self.folder(slug)):
            for name in dirs + files:
                path = os.path.join(folder, name)
                if os.lstat(path).st_uid in uids:
                    os.chown(path, 0, -1, follow_symlinks=False)
        log.info("%s: files of %s now belong to root", slug, ", ".join(sorted(accounts)))

    def _bridge_running(self, slug: str, roles: dict[str, str], accounts: dict[str, pwd.struct_passwd],
                        gids: Mapping[str, int | None], only: set[int] | None = None) -> None:
        """Members with running processes that lack the project's group reach the folder through
        their own ACL entries (bridge.py); nobody else keeps any. `only`: the uids to consider."""
        held = held_groups({e.pw_uid for e in accounts.values()})
        wanted = {}
        for user, entry in accounts.items():
            access, running = access_of(roles[user]), held[entry.pw_uid]
            if running and gids.get(access) not in running and self._gate_open(roles[user], running, gids):
                wanted[entry.pw_uid] = access
        folder = self.folder(slug)
        current = bridge.bridged(folder)
        for uid in set(current) - set(wanted):
            if only is None or uid in only:
                bridge.set_member(folder, uid, None)
        for uid, access in wanted.items():
            if current.get(uid) != acl.perm(bridge.PERMISSIONS[access]):
                bridge.set_member(folder, uid, access)
                log.info("%s: uid %s reaches the folder through its own ACL entries until its processes "
                         "restart with the project's group", slug, uid)

    def _gate_open(self, role: str, held: set[int], gids: Mapping[str, int | None]) -> bool:
        """A member passes the gate unless a running process holds write access their role lacks."""
        return not (access_of(role) == "ro" and gids.get("rw") in held)

    def _write_gate(self, slug: str, roles: dict[str, str], accounts: dict[str, pwd.struct_passwd],
                    gids: dict[str, int]) -> None:
        held = held_groups({e.pw_uid for e in accounts.values()})
        open_for = {}
        for user, entry in accounts.items():
            if self._gate_open(roles[user], held[entry.pw_uid], gids):
                open_for[entry.pw_uid] = "--x"
            else:
                log.info("%s: the gate stays shut for %s until their running processes that still hold "
                         "write access end", slug, user)
        acl.set_acl(self.root / slug, acl.build("rwx", "---", "---", users=open_for))

    def _update_gate_entry(self, slug: str, entry: pwd.struct_passwd, role: str | None,
                           gids: dict[str, int | None]) -> None:
        gate = self.root / slug
        current = acl.get_acl(gate)
        users = {e.id: "--x" for e in current if e.tag == acl.USER}
        users.pop(entry.pw_uid, None)
        if role is not None and self._gate_open(role, held_groups({entry.pw_uid})[entry.pw_uid], gids):
            users[entry.pw_uid] = "--x"
        acl.set_acl(gate, acl.build("rwx", "---", "---", users=users))

    @staticmethod
    def _set_one_member(group: str, account: str, member: bool) -> None:
        if gid_of(group) is None:
            return
        (add_member if member else remove_member)(group, account)

    # ------------------------------------------------------------ links in homes

    def _user_of_home(self, home: Path, members: dict[str, str]) -> str | None:
        for user in members:
            if self.home(user) == home:
                return user
        return None

    def _sync_links(self, home: Path, uid: int, gid: int, wanted: set[str], considered: set[str] | None) -> None:
        """~/projects/<slug> links: present for `wanted`, absent for other `considered` slugs
        (None: every link into the project root). Never follows a link the user planted and
        never touches anything that is not a link made here."""
        try:
            home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            links_fd = self._open_links_folder(home_fd, uid, gid, create=bool(wanted))
            if links_fd is None:
                return
            try:
                for name in sorted(os.listdir(links_fd)):
                    target = self._our_link(links_fd, name)
                    if target is not None and name not in wanted and (considered is None or name in considered):
                        os.unlink(name, dir_fd=links_fd)
                for slug in sorted(wanted):
                    self._make_link(links_fd, slug, uid, gid)
            finally:
                os.close(links_fd)
        finally:
            os.close(home_fd)

    def _open_links_folder(self, home_fd: int, uid: int, gid: int, create: bool) -> int | None:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        try:
            return os.open(LINKS_FOLDER, flags, dir_fd=home_fd)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(LINKS_FOLDER, 0o755, dir_fd=home_fd)
            fd = os.open(LINKS_FOLDER, flags, dir_fd=home_fd)
            os.fchown(fd, uid, gid)
            return fd
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                log.warning("not linking projects: ~/%s is not a folder", LINKS_FOLDER)
                return None
            raise

    def _our_link(self, links_fd: int, name: str) -> str | None:
        try:
            target = os.readlink(name, dir_fd=links_fd)
        except OSError:
            return None
        return target if Path(target).parent.parent == self.root and Path(target).name == SHARED else None

    def _earlier_root_link(self, links_fd: int, slug: str) -> bool:
        """A link made by gpulab under a projects root configured before this one
        (`<old root>/<slug>/files`): replaced, or the member would keep writing to the old folder."""
        try:
            target = Path(os.readlink(slug, dir_fd=links_fd))
        except OSError:
            return False
        return target.is_absolute() and target.name == SHARED and target.parent.name == slug

    def _make_link(self, links_fd: int, slug: str, uid: int, gid: int) -> None:
        target = str(self.folder(slug))
        current = self._our_link(links_fd, slug)
        if current == target:
            return
        if current is not None or self._earlier_root_link(links_fd, slug):
            os.unlink(slug, dir_fd=links_fd)
        try:
            os.symlink(target, slug, dir_fd=links_fd)
        except FileExistsError:
            log.warning("not linking project %s: the user has their own ~/%s/%s", slug, LINKS_FOLDER, slug)
            return
        os.chown(slug, uid, gid, dir_fd=links_fd, follow_symlinks=False)
