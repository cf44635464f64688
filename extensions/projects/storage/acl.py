"""POSIX ACLs read and written as the kernel stores them (the `system.posix_acl_*` xattrs).

Building an ACL is pure (tested against literal bytes and against `getfacl`); applying it
is one `setxattr`, so no `setfacl` process runs per change. The layout is the kernel's
`posix_acl_xattr` format: a little-endian u32 version (2), then one (u16 tag, u16 perm,
u32 id) entry per line of the ACL, sorted by tag and id.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
UNDEFINED_ID = 0xFFFFFFFF
ACCESS, DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_TAG_NAMES = {USER_OBJ: "user", USER: "user", GROUP_OBJ: "group", GROUP: "group", MASK: "mask", OTHER: "other"}


@dataclass(frozen=True, order=True)
class Entry:
    tag: int
    id: int
    perm: int  # 4 read, 2 write, 1 execute


def perm(text: str) -> int:
    """"r-x" -> 5."""
    return (4 if "r" in text else 0) | (2 if "w" in text else 0) | (1 if "x" in text else 0)


def build(owner: str, group: str, other: str, users: dict[int, str] | None = None,
          groups: dict[int, str] | None = None) -> list[Entry]:
    """A complete ACL; the mask is the union of the group class (as setfacl computes it)."""
    users, groups = users or {}, groups or {}
    entries = [Entry(USER_OBJ, UNDEFINED_ID, perm(owner)), Entry(GROUP_OBJ, UNDEFINED_ID, perm(group)),
               Entry(OTHER, UNDEFINED_ID, perm(other))]
    entries += [Entry(USER, uid, perm(p)) for uid, p in users.items()]
    entries += [Entry(GROUP, gid, perm(p)) for gid, p in groups.items()]
    if users or groups:
        mask = perm(group)
        for p in list(users.values()) + list(groups.values()):
            mask |= perm(p)
        entries.append(Entry(MASK, UNDEFINED_ID, mask))
    return sorted(entries)


def with_user(entries: list[Entry], uid: int, permission: str | int | None) -> list[Entry]:
    """`entries` with user `uid`'s entry set to `permission` (None: removed). The mask stays as
    it is, so the user's effective rights are never more than the group class already gets."""
    kept = [e for e in entries if not (e.tag == USER and e.id == uid)]
    if permission is None:
        return kept
    bits = perm(permission) if isinstance(permission, str) else permission
    if not any(e.tag == MASK for e in kept):
        group = next((e.perm for e in kept if e.tag == GROUP_OBJ), 0)
        kept.append(Entry(MASK, UNDEFINED_ID, group | bits))
    return sorted(kept + [Entry(USER, uid, bits)])


def user_entries(entries: list[Entry]) -> dict[int, int]:
    """uid -> permission bits of the named-user entries."""
    return {e.id: e.perm for e in entries if e.tag == USER}


def encode(entries: list[Entry]) -> bytes:
    return _HEADER.pack(VERSION) + b"".join(_ENTRY.pack(e.tag, e.perm, e.id) for e in sorted(entries))


def decode(data: bytes) -> list[Entry]:
    (version,) = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"unknown POSIX ACL version {version}")
    body = data[_HEADER.size:]
    entries = []
    for offset in range(0, len(body), _ENTRY.size):
        tag, p, ident = _ENTRY.unpack_from(body, offset)
        entries.append(Entry(tag, ident, p))
    return sorted(entries)


def render(entries: list[Entry]) -> list[str]:
    """`getfacl --numeric`'s lines, for messages and tests: "user:1001:r-x"."""
    def text(p: int) -> str:
        return ("r" if p & 4 else "-") + ("w" if p & 2 else "-") + ("x" if p & 1 else "-")

    lines = []
    for e in sorted(entries):
        qualifier = "" if e.id == UNDEFINED_ID else str(e.id)
        lines.append(f"{_TAG_NAMES[e.tag]}:{qualifier}:{text(e.perm)}")
    return lines


def set_acl(path: str | os.PathLike, entries: list[Entry], kind: str = ACCESS) -> None:
    os.setxattr(path, kind, encode(entries), follow_symlinks=False)


def get_acl(path: str | os.PathLike, kind: str = ACCESS) -> list[Entry]:
    """The ACL at `path` ([] when it has none beyond its mode bits)."""
    try:
        return decode(os.getxattr(path, kind, follow_symlinks=False))
    except OSError as error:
        if error.errno in (61, 95):  # ENODATA: no ACL set; EOPNOTSUPP: none possible
            return []
        raise
