"""Which project names are allowed, and why a name is refused (pure).

A project's name is its slug: it appears in URLs (/services/projects/<name>), in hub
group names (project:<name>:editor), in folder names (~/projects/<name>) and in system
group names, so it is kept to lowercase letters, digits and dashes. A name is judged in its
normal form (Unicode NFKC, trimmed), so a look-alike of a reserved name (full-width "ａｐｉ",
"api" with a no-break space) is refused as that name, and " vision " is "vision".
"""

from __future__ import annotations

import unicodedata

from gpulab.hub_config.services.errors import Invalid

from .membership import SLUG

MAX_LENGTH = 40  # what membership.SLUG allows
# Names the service's own URLs or the hub use, and names that would confuse people.
RESERVED = frozenset({
    "api", "static", "oauth-callback", "oauth_callback", "new", "create", "edit", "delete",
    "admin", "hub", "user", "users", "group", "groups", "services", "service", "projects", "project",
    "shared", "share", "shares", "home", "root", "all", "none", "default", "public", "lost-found",
})


def normal_name(name: str) -> str:
    """What a name reads as: compatibility characters folded (NFKC), surrounding whitespace gone."""
    return unicodedata.normalize("NFKC", name).strip()


def name_problem(name: str) -> str | None:
    """Why `name` (in its normal form) cannot be a project name, or None when it can."""
    name = normal_name(name)
    if not name:
        return "a project name is required"
    if "/" in name or "\\" in name or ".." in name or name.startswith("."):
        return f"{name!r} is not a valid project name: it must not contain '/', '\\' or '..', nor start with '.'"
    if len(name) > MAX_LENGTH:
        return f"a project name has at most {MAX_LENGTH} characters; {name[:12]!r}... has {len(name)}"
    if not SLUG.match(name):
        return (f"{name!r} is not a valid project name: use lowercase letters, digits and '-', start with "
                "a letter, end with a letter or digit, at least 2 characters")
    if name in RESERVED:
        return f"{name!r} is reserved; choose another project name"
    return None


def check_name(name: str) -> str:
    """The normal form of `name` if it is a valid project name; raises Invalid (400) with the reason otherwise."""
    problem = name_problem(name)
    if problem:
        raise Invalid(problem)
    return normal_name(name)
