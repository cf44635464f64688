"""Which experiments belong to a project, decided by name when they are created (pure).

An experiment named `<project>/<anything>`, e.g. `vision/resnet-sweep`, belongs to project
`vision` when that project exists (it has hub groups) or its creator is a member; creating
one needs the editor or maintainer role. Any other name makes a private experiment of its
creator's, including a slashed name whose first part is no project. The decision is
recorded at creation (project grants and the `gpulab.project` tag) and never re-derived
from the name, so a project created later does not take over older experiments.

`Default (<user>)` is each user's own default experiment (MLFLOW_EXPERIMENT_NAME in their
servers); nobody else may create or take that name.

Names are compared in a normal form (Unicode NFKC, whitespace trimmed and collapsed, the
user's name without case), so look-alikes such as `Default (bob) ` or `Default\u00a0(bob)` or
`vision\uff0fsweep` (a full-width slash) are judged as the names they imitate.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

from gpulab.extensions.projects.membership import SLUG, project_roles
from gpulab.hub_config.services.errors import Invalid, NotAllowed

from .identity import Identity

PROJECT_TAG = "gpulab.project"
WRITER_ROLES = ("editor", "maintainer")
DEFAULT_EXPERIMENT = re.compile(r"^Default ?\((?P<user>.+)\)$")  # matched on the normal form


def normal_form(name: str) -> str:
    """What a name reads as: NFKC (compatibility characters folded), whitespace trimmed and collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


def project_of_name(name: str) -> str | None:
    """The project slug a name points at (`vision/...` -> "vision"), or None."""
    slug, slash, rest = normal_form(name).partition("/")
    if not slash or not rest.strip() or not SLUG.match(slug):
        return None
    return slug


def check_reserved(name: str, identity: Identity) -> None:
    reserved = DEFAULT_EXPERIMENT.match(normal_form(name))
    owner = reserved.group("user").strip() if reserved else None
    if owner is not None and owner.casefold() != identity.name.casefold() and not identity.admin:
        raise NotAllowed(f"the experiment name {name!r} is reserved for {owner}'s own runs")


def project_for_new_experiment(name: str, identity: Identity, project_exists: Callable[[str], bool]) -> str | None:
    """The project a new experiment called `name` belongs to (None: private); raises NotAllowed."""
    check_reserved(name, identity)
    slug = project_of_name(name)
    if slug is None:
        return None
    role = project_roles(sorted(identity.groups)).get(slug)
    if role is None and not project_exists(slug):
        return None  # a slashed name, not a project: a private experiment
    if role not in WRITER_ROLES and not identity.admin:
        raise NotAllowed(
            f"experiments named {slug}/... belong to project {slug!r}; creating one needs the editor "
            f"or maintainer role in it (you have {'the ' + role + ' role' if role else 'no role'})"
        )
    return slug


def check_rename(current_project: str | None, new_name: str, identity: Identity,
                 project_exists: Callable[[str], bool]) -> None:
    """A rename keeps an experiment where it is: in its project, or private."""
    check_reserved(new_name, identity)
    slug = project_of_name(new_name)
    if slug == current_project:
        return
    if current_project is None and (slug is None or not _is_project(slug, identity, project_exists)):
        return  # private before and after
    where = f"project {current_project!r}" if current_project else "private"
    raise Invalid(
        f"renaming to {new_name!r} would move this {where} experiment "
        f"{'out of its project' if current_project else 'into project ' + repr(slug)}; "
        "experiments cannot change hands: create a new one there instead"
    )


def _is_project(slug: str, identity: Identity, project_exists: Callable[[str], bool]) -> bool:
    return slug in project_roles(sorted(identity.groups)) or project_exists(slug)
