"""How project membership is expressed in JupyterHub: one hub group per project and role.

Project `vision` has the groups `project:vision:viewer`, `project:vision:editor` and
`project:vision:maintainer`. Other components (MLflow, the scheduler, the SSH gateway)
learn a user's projects from their hub groups, so a membership change made through the
hub API takes effect everywhere without a restart.
"""

from __future__ import annotations

import re

ROLES = ("viewer", "editor", "maintainer")  # each role includes the rights of the ones before it
GROUP_PREFIX = "project:"
SLUG = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")


def project_group(slug: str, role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown project role {role!r}; expected one of {', '.join(ROLES)}")
    return f"{GROUP_PREFIX}{slug}:{role}"


def parse_project_group(group: str) -> tuple[str, str] | None:
    """(slug, role) for a project group name, None for any other group."""
    if not group.startswith(GROUP_PREFIX):
        return None
    slug, _, role = group[len(GROUP_PREFIX):].rpartition(":")
    if role not in ROLES or not SLUG.match(slug):
        return None
    return slug, role


def project_roles(groups: list[str]) -> dict[str, str]:
    """Each project the user belongs to, with their highest role in it."""
    roles: dict[str, str] = {}
    for group in groups:
        parsed = parse_project_group(group)
        if parsed is None:
            continue
        slug, role = parsed
        if slug not in roles or ROLES.index(role) > ROLES.index(roles[slug]):
            roles[slug] = role
    return roles


def can(groups: list[str], slug: str, needed: str) -> bool:
    """Whether a user with these hub groups has at least role `needed` in project `slug`."""
    have = project_roles(groups).get(slug)
    return have is not None and ROLES.index(have) >= ROLES.index(needed)
