"""Rules for the spawner's settings that JSON Schema cannot express, checked at load time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpulab.compute.profiles import parse_size
from gpulab.hub_config.settings import ConfigError, Problem
from gpulab.images.catalog import load_catalog

if TYPE_CHECKING:
    from gpulab.hub_config.typed_settings import Profile, Settings


def check_settings(s: Settings) -> list[Problem]:
    problems = _check_profiles(s.profiles)
    problems += _check_kubespawner_parts(s)
    problems += _check_environments(s)
    return problems


ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
# KubeSpawner settings a profile may not override: gpulab builds them (hub_config/hand_set.py).
NOT_OVERRIDABLE = ("profile_list", "options_form", "options_from_form", "profile_form_template",
                   "additional_profile_form_template_paths")


def _check_overrides(where: str, overrides: Mapping[str, Any], backend: str) -> list[Problem]:
    if not overrides:
        return []
    if backend != "kubernetes":
        return [Problem(where, "KubeSpawner settings apply to pods: they need spawner.backend kubernetes")]
    from kubespawner import KubeSpawner

    known = set(KubeSpawner.class_traits(config=True))
    problems = []
    for name in overrides:
        if name in NOT_OVERRIDABLE:
            problems.append(Problem(f"{where}.{name}", "gpulab builds this from `profiles`; a profile cannot override it"))
        elif name not in known:
            problems.append(Problem(f"{where}.{name}", "not a KubeSpawner setting"))
    return problems


def _check_kubespawner_parts(s: Settings) -> list[Problem]:
    """kubespawner_override (profiles, choices, unlisted choices) and profile_options."""
    backend = s.spawner.backend
    problems = []
    for i, profile in enumerate(s.profiles):
        where = f"profiles[{i}]"
        problems += _check_overrides(f"{where}.kubespawner_override", profile.kubespawner_override, backend)
        for name, option in profile.profile_options.items():
            at = f"{where}.profile_options.{name}"
            choices, unlisted = option.choices, option.unlisted_choice
            for key, choice in choices.items():
                problems += _check_overrides(f"{at}.choices.{key}.kubespawner_override",
                                             choice.kubespawner_override, backend)
            problems += _check_overrides(f"{at}.unlisted_choice.kubespawner_override",
                                         unlisted.kubespawner_override, backend)
            if not choices and not unlisted.enabled:
                problems.append(Problem(at, "offers nothing: give choices or enable unlisted_choice"))
            defaults = [key for key, choice in choices.items() if choice.default]
            if len(defaults) > 1:
                problems.append(Problem(f"{at}.choices", f"only one choice can be the default; {', '.join(defaults)} are"))
            try:
                re.compile(unlisted.validation_regex)
            except re.error as error:
                problems.append(Problem(f"{at}.unlisted_choice.validation_regex", f"not a regular expression: {error}"))
    return problems


def _check_profiles(profiles: tuple[Profile, ...]) -> list[Problem]:
    problems = []
    seen: dict[str, int] = {}
    default_at = None
    for i, profile in enumerate(profiles):
        where = f"profiles[{i}]"
        if profile.slug and profile.slug != profile.id:
            problems.append(Problem(f"{where}.slug", f"{profile.slug!r} differs from id {profile.id!r}: give one of the two"))
        if not ID.match(profile.id):
            problems.append(Problem(f"{where}.display_name", f"no id can be made from it (got {profile.id!r}): give `id`"))
        if profile.id in seen:
            problems.append(Problem(f"{where}.id", f"{profile.id!r} is already the id of profiles[{seen[profile.id]}]"))
        seen.setdefault(profile.id, i)
        if profile.default:
            if default_at is not None:
                problems.append(Problem(f"{where}.default", f"only one profile can be the default; profiles[{default_at}] is"))
            default_at = i if default_at is None else default_at
        gpu = profile.gpu
        if gpu.mig_profile and gpu.count != 1:
            problems.append(Problem(f"{where}.gpu.count", "a MIG profile takes exactly one slice: set gpu.count to 1"))
        if gpu.models and not gpu.count:
            problems.append(Problem(f"{where}.gpu.models", "models need gpu.count of at least 1"))
        cpu, memory = profile.cpu, profile.memory
        if cpu.guarantee and cpu.limit and cpu.guarantee > cpu.limit:
            problems.append(Problem(f"{where}.cpu.guarantee", f"{cpu.guarantee} is more than the limit {cpu.limit}"))
        guarantee, limit = parse_size(memory.guarantee), parse_size(memory.limit)
        if guarantee and limit and guarantee > limit:
            problems.append(Problem(f"{where}.memory.guarantee", f"{memory.guarantee} is more than the limit {memory.limit}"))
    return problems


def _check_environments(s: Settings) -> list[Problem]:
    settings = s.environments
    try:
        catalog = load_catalog(Path(settings.catalog) if settings.catalog else None)
    except ConfigError as exc:
        return [Problem("environments.catalog", f"the catalog is invalid: {exc.problems[0].render(exc.source)}")]
    except OSError as exc:
        return [Problem("environments.catalog", f"cannot read {settings.catalog}: {exc.strerror}")]
    known = [e.id for e in catalog]

    def unknown(where: str, ids) -> list[Problem]:
        return [Problem(where, f"{i!r} is not in the catalog (known: {', '.join(known)})") for i in ids if i not in known]

    problems = unknown("environments.offer", settings.offer)
    problems += unknown("environments.local_python", settings.local_python)
    offered = settings.offer or known
    if settings.default and settings.default not in offered:
        problems.append(Problem("environments.default", f"{settings.default!r} is not offered"))
    for i, profile in enumerate(s.profiles):
        problems += unknown(f"profiles[{i}].environments", profile.environments)
    return problems
