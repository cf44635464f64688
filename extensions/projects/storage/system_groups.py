"""System groups of project folders, and which groups running processes still hold.

Each project has two system groups: `<prefix><slug>-rw` (editors and maintainers) and
`<prefix><slug>-ro` (viewers). A process gets its supplementary groups when it starts and
keeps them: editing /etc/group does not change a running server. `held_groups` reads what
every process of an account really holds, so the folder's gate can stay shut for someone
whose running server still carries a group they lost (see local.py).
"""

from __future__ import annotations

import grp
import hashlib
import os
import re
import subprocess
from pathlib import Path

MAX_GROUP_LENGTH = 32  # groupadd's limit on Linux
ACCESS_SUFFIXES = ("rw", "ro")


class GroupError(Exception):
    """A system group could not be created or changed; the message says why."""


def group_name(prefix: str, slug: str, access: str) -> str:
    """`gpulab-p-vision-rw`; long names keep a readable stem and a hash (pure)."""
    name = f"{prefix}{slug}-{access}"
    if len(name) <= MAX_GROUP_LENGTH:
        return name
    digest = hashlib.sha256(slug.encode()).hexdigest()[:6]
    room = MAX_GROUP_LENGTH - len(prefix) - len(digest) - len(access) - 2
    stem = slug[:max(room, 0)].rstrip("-")
    return f"{prefix}{stem}-{digest}-{access}" if stem else f"{prefix}{digest}-{access}"


def gid_of(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def members_of(name: str) -> set[str]:
    try:
        return set(grp.getgrnam(name).gr_mem)
    except KeyError:
        return set()


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise GroupError(f"{' '.join(command)} failed: {result.stderr.strip() or result.returncode}")


def ensure_group(name: str) -> int:
    gid = gid_of(name)
    if gid is None:
        _run("groupadd", name)
        gid = gid_of(name)
        if gid is None:
            raise GroupError(f"group {name} was not created")
    return gid


def delete_group(name: str) -> None:
    if gid_of(name) is not None:
        _run("groupdel", name)


def set_members(name: str, accounts: set[str]) -> None:
    """Make `accounts` the group's members, exactly (one write of /etc/group, under its lock)."""
    if members_of(name) != accounts:
        _run("gpasswd", "-M", ",".join(sorted(accounts)), name)


def add_member(name: str, account: str) -> None:
    if account not in members_of(name):
        _run("gpasswd", "-a", account, name)


def remove_member(name: str, account: str) -> None:
    if account in members_of(name):
        _run("gpasswd", "-d", account, name)


# ---------------------------------------------------------------- what processes hold

_UID = re.compile(r"^Uid:\s+(\d+)", re.MULTILINE)
_GID = re.compile(r"^Gid:\s+(\d+)", re.MULTILINE)
_GROUPS = re.compile(r"^Groups:[ \t]*([\d \t]*)$", re.MULTILINE)


def parse_status(text: str) -> tuple[int, set[int]] | None:
    """(real uid, every gid held) from a /proc/<pid>/status text (pure)."""
    uid, gid, groups = _UID.search(text), _GID.search(text), _GROUPS.search(text)
    if not uid or not gid:
        return None
    held = {int(gid.group(1))} | {int(g) for g in (groups.group(1).split() if groups else [])}
    return int(uid.group(1)), held


def held_groups(uids: set[int], proc: Path = Path("/proc")) -> dict[int, set[int]]:
    """For each uid in `uids`, the union of the groups its running processes hold."""
    held: dict[int, set[int]] = {uid: set() for uid in uids}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            parsed = parse_status(Path(entry.path, "status").read_text())
        except OSError:  # the process ended while we looked
            continue
        if parsed and parsed[0] in held:
            held[parsed[0]] |= parsed[1]
    return held
