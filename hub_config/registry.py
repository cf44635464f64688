"""What an extension adds to the hub, and where the hub finds the extensions.

An extension declares one `Extension` and names it under the `gpulab.extensions` entry-point
group (pyproject.toml), so adding one needs no edit in `hub_config`. Its `update` step sets
what it owns (its services, roles and traits); what several extensions add to one setting
(the servers' arguments, environment and hooks, the navigation bar) it returns instead, and
`apply_config` composes them once, in `position` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable

from traitlets.config import Config

if TYPE_CHECKING:  # extensions' modules load in user servers too, which need no pydantic
    from .typed_settings import Settings

ENTRY_POINT_GROUP = "gpulab.extensions"


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str


def _nothing(s: Settings) -> list:
    return []


def _no_variables(s: Settings) -> dict:
    return {}


def _no_hook(s: Settings) -> None:
    return None


def _always(s: Settings) -> bool:
    return True


@dataclass(frozen=True)
class Extension:
    """What one extension contributes; each callable reads the typed settings."""

    name: str
    position: int  # order among extensions: navigation links, arguments and hooks follow it
    update: Callable[[Settings, Config], None]
    enabled: Callable[[Settings], bool] = _always  # off: it adds nothing at all
    nav_links: Callable[[Settings], list[NavLink]] = _nothing
    server_args: Callable[[Settings], list[str]] = _nothing
    # defaults: a variable the admin sets in `spawner.environment` wins
    server_environment: Callable[[Settings], dict[str, Any]] = _no_variables
    pre_spawn_hook: Callable[[Settings], Callable | None] = _no_hook
    post_auth_hook: Callable[[Settings], Callable | None] = _no_hook


def installed_extensions() -> list[Extension]:
    """Every registered extension, in `position` order."""
    found = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        extension = entry.load()
        if not isinstance(extension, Extension):
            raise TypeError(f"entry point {entry.name} = {entry.value} is not a gpulab Extension")
        found.append(extension)
    if not found:
        raise RuntimeError(f"no {ENTRY_POINT_GROUP} entry points: gpulab is not installed (pip install -e .)")
    return sorted(found, key=lambda e: (e.position, e.name))
