"""Access that reaches a member's processes already running.

A process gets its groups when it starts, so a member whose server was running when they
joined a project (its creator included) could not open the folder until a restart. Until
their next start, such a member is given their own ACL entries (`user:<uid>:rwx` or `r-x`,
on every file and folder and in the folders' default ACLs, so new files carry them too); the
entries go again when no running process of theirs lacks the project's group, or when they
leave. The mask is kept, so an entry never grants more than the member's group would.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import acl

PERMISSIONS = {"rw": "rwx", "ro": "r-x"}


def bridged(folder: Path) -> dict[int, int]:
    """uid -> permission bits of the members bridged into `folder` now."""
    return acl.user_entries(acl.get_acl(folder))


def set_member(folder: Path, uid: int, access: str | None) -> None:
    """Give `uid` the entries of `access` ("rw", "ro") on everything in `folder`, or (None) take
    them away. Links are never followed; a file that goes away meanwhile is skipped."""
    permission = PERMISSIONS[access] if access else None
    for top, folders, files in os.walk(folder, followlinks=False):
        _set(top, uid, permission, (acl.ACCESS, acl.DEFAULT))
        for name in files + [f for f in folders if os.path.islink(os.path.join(top, f))]:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                _set(path, uid, permission, (acl.ACCESS,))


def _set(path: str, uid: int, permission: str | None, kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        try:
            entries = acl.get_acl(path, kind)
            if entries:  # everything in a project folder has an ACL; nothing else is touched
                changed = acl.with_user(entries, uid, permission)
                if changed != entries:
                    acl.set_acl(path, changed, kind)
        except FileNotFoundError:
            return
