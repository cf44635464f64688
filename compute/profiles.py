"""Compute profiles (pure): the model, who may use which, and resolving a user's choice.

Every spawn resolves the choice from scratch into a new `Profile` value; nothing about a
profile is written onto the spawner's configuration, so one spawn's profile cannot leak
into the next (kubespawner#546, #691).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .profile_options import ProfileOption, option_keys, options_from_settings

if TYPE_CHECKING:  # pydantic only where settings are read (runners and servers import this module too)
    from gpulab.hub_config.typed_settings import Profile as ProfileSettings
    from gpulab.hub_config.typed_settings import Settings

SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]i?)?$")
UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_size(text: str | None) -> int | None:
    """Bytes in a size such as "8G" or "512Mi" (None stays None)."""
    if text is None:
        return None
    match = SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size such as 8G or 512Mi")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def human_size(size: int) -> str:
    for unit, factor in (("T", 10**12), ("G", 10**9), ("M", 10**6)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}B" if value == int(value) else f"{value:.1f} {unit}B"
    return f"{size} B"


@dataclass(frozen=True)
class GpuRequest:
    count: int = 0
    models: tuple[str, ...] = ()
    mig_profile: str | None = None

    def describe(self) -> str:
        if not self.count:
            return "no GPU"
        if self.mig_profile:
            return f"1 MIG {self.mig_profile} slice"
        kind = " or ".join(self.models) if self.models else "GPU"
        return f"{self.count} × {kind}" if self.count > 1 else f"1 {kind}"


@dataclass(frozen=True)
class Profile:
    id: str
    display_name: str
    description: str = ""
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    memory_guarantee: int | None = None
    memory_limit: int | None = None
    gpu: GpuRequest = GpuRequest()
    allowed_groups: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    default: bool = False
    idle_timeout: int = 0
    environments: tuple[str, ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[dict, ...] = ()
    # KubeSpawner's: applied on Kubernetes after the profile's own settings, then each chosen option's.
    kubespawner_override: dict = field(default_factory=dict, compare=False)
    options: tuple[ProfileOption, ...] = field(default=(), compare=False)

    @property
    def uses_gpu(self) -> bool:
        return self.gpu.count > 0

    def resources(self) -> str:
        """A short line for the spawn page, e.g. "4 CPUs · 32 GB · 1 A100"."""
        parts = []
        if self.cpu_limit:
            parts.append(f"{self.cpu_limit:g} CPU" + ("s" if self.cpu_limit != 1 else ""))
        if self.memory_limit:
            parts.append(human_size(self.memory_limit))
        if self.uses_gpu:
            parts.append(self.gpu.describe())
        return " · ".join(parts)


class ChoiceError(Exception):
    """A profile or environment choice that is refused; `status` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def profiles_from_settings(settings: Settings | Mapping[str, Any]) -> tuple[Profile, ...]:
    """The settings' `profiles` as compute profiles. The spawner's traits and the scheduler's
    settings still hand them over as dicts ({"profiles": [...]}, complete, ids filled): each is
    typed at this entry."""
    from gpulab.hub_config.typed_settings import Profile as ProfileSettings
    from gpulab.hub_config.typed_settings import Settings

    items: Iterable[ProfileSettings | Mapping[str, Any]] = (
        settings.profiles if isinstance(settings, Settings) else settings["profiles"])
    typed = (item if isinstance(item, ProfileSettings) else ProfileSettings.model_validate(item) for item in items)
    return tuple(profile_from_settings(item) for item in typed)


def profile_from_settings(item: ProfileSettings) -> Profile:
    from gpulab.hub_config.typed_settings import plain

    gpu = item.gpu
    return Profile(
        id=item.id,
        display_name=item.display_name,
        description=item.description,
        cpu_guarantee=item.cpu.guarantee,
        cpu_limit=item.cpu.limit,
        memory_guarantee=parse_size(item.memory.guarantee),
        memory_limit=parse_size(item.memory.limit),
        gpu=GpuRequest(gpu.count, gpu.models, gpu.mig_profile),
        allowed_groups=item.allowed_groups,
        allowed_users=item.allowed_users,
        default=item.default,
        idle_timeout=item.idle_timeout,
        environments=item.environments,
        node_selector=tuple(sorted(item.node_selector.items())),
        # what goes into pod manifests stays plain (the Kubernetes backend copies and merges it)
        tolerations=tuple(plain(item.tolerations)),
        kubespawner_override=plain(item.kubespawner_override),
        options=options_from_settings(item.profile_options),
    )


def profile_id(item: dict) -> str:
    """A profile's id: `id`, else z2jh's `slug`, else made from display_name as KubeSpawner does."""
    from slugify import slugify

    return item.get("id") or item.get("slug") or slugify(item["display_name"])


def with_profile_ids(profiles: list[dict]) -> list[dict]:
    return [{**item, "id": profile_id(item)} for item in profiles]


def may_use(profile: Profile, user: str, groups: list[str] | set[str], admin: bool = False) -> bool:
    if admin or not (profile.allowed_users or profile.allowed_groups):
        return True
    return user in profile.allowed_users or bool(set(groups) & set(profile.allowed_groups))


def visible_profiles(profiles, user: str, groups, admin: bool = False) -> list[Profile]:
    return [p for p in profiles if may_use(p, user, groups, admin)]


def default_profile(profiles) -> Profile:
    return next((p for p in profiles if p.default), profiles[0])


def resolve_profile(profiles, options: dict, user: str, groups, admin: bool = False) -> Profile:
    """The profile a user asked for in `options`; ChoiceError 400 if unknown, 403 if not theirs."""
    wanted = options.get("profile")
    if wanted is None or wanted == "":
        allowed = visible_profiles(profiles, user, groups, admin)
        if not allowed:
            raise ChoiceError(403, f"{user} may not use any profile")
        chosen = default_profile(profiles)
        return chosen if chosen in allowed else allowed[0]
    if not isinstance(wanted, str):
        raise ChoiceError(400, "profile must be a profile id (a string)")
    by_id = {p.id: p for p in profiles}
    if wanted not in by_id:
        raise ChoiceError(400, f"unknown profile {wanted!r}; known: {', '.join(by_id)}")
    profile = by_id[wanted]
    if not may_use(profile, user, groups, admin):
        raise ChoiceError(403, f"{user} may not use profile {wanted!r}")
    return profile


def unknown_options(options: dict, profile: Profile) -> list[str]:
    return sorted(set(options) - {"profile", "environment", "project"} - option_keys(profile.options))
