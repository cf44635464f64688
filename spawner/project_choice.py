"""Which project a server's hours count towards: the spawn's `project` option (pure).

A server may name one project its user can edit, the rule the scheduler applies to a
schedule's project. Its GPU claim then carries the project, so its GPU-hours count towards
the project's usage and monthly budget, as a scheduled run's do. Membership is read from the
user's hub groups (extensions/projects/membership.py), as every other component reads it.
"""

from __future__ import annotations

from gpulab.compute.profiles import ChoiceError
from gpulab.extensions.projects.membership import ROLES, SLUG, can, project_roles

NEEDED_ROLE = "editor"  # a viewer may look at a project's work, not spend its budget


def projects_for_servers(groups: list[str]) -> list[str]:
    """The projects a server of this user may name, sorted."""
    return sorted(slug for slug, role in project_roles(groups).items()
                  if ROLES.index(role) >= ROLES.index(NEEDED_ROLE))


def resolve_project(value, user: str, groups: list[str]) -> str:
    """The project named by the `project` option ("" for none); ChoiceError 400/403 with the reason."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not SLUG.match(value):
        raise ChoiceError(400, f"project must be a project's name (lowercase letters, digits and '-'), not {value!r}")
    if not can(groups, value, NEEDED_ROLE):
        if can(groups, value, "viewer"):
            raise ChoiceError(403, f"viewers of project {value!r} cannot start servers for it")
        raise ChoiceError(403, f"{user} is not an editor of project {value!r}")
    return value
