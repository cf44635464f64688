"""Which catalog environments a profile offers, and whether each can run here (pure)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from gpulab.compute.profiles import ChoiceError, Profile
from gpulab.images.catalog import Environment

from .cuda import incompatibility

if TYPE_CHECKING:  # typed settings (pydantic) only where settings are read: the hub, the scheduler
    from gpulab.hub_config.typed_settings import Environments


@dataclass(frozen=True)
class EnvironmentOption:
    environment: Environment
    unavailable: str | None = None  # why it cannot be used right now

    @property
    def id(self) -> str:
        return self.environment.id


def offered(catalog: list[Environment], settings: Environments) -> list[Environment]:
    """The catalog filtered and ordered by environments.offer, local_python overrides applied."""
    by_id = {e.id: e for e in catalog}
    chosen = [by_id[i] for i in settings.offer if i in by_id] if settings.offer else list(catalog)
    overrides = settings.local_python
    return [replace(e, local_python=overrides[e.id]) if e.id in overrides else e for e in chosen]


def options_for(
    profile: Profile,
    environments: list[Environment],
    driver: str | None,
    python_exists: Callable[[str], bool] | None = None,
) -> list[EnvironmentOption]:
    """The environments that fit `profile`, each with the reason it is unavailable, if any.

    GPU profiles get GPU environments and CPU profiles CPU ones, unless the profile lists
    its environments. `python_exists` (local backend) checks an environment's Python is
    installed; `driver` is the NVIDIA driver the server would run on (None: none).
    """
    if profile.environments:
        wanted = [e for e in environments if e.id in profile.environments]
    else:
        wanted = [e for e in environments if e.gpu == profile.uses_gpu]
    options = []
    for env in wanted:
        reason = incompatibility(env.cuda, env.min_driver, driver) if profile.uses_gpu else None
        if reason is None and python_exists is not None and env.local_python and not python_exists(env.local_python):
            reason = (f"its Python environment {env.local_python} is not installed on this machine "
                      f"(environments.local_python.{env.id})")
        options.append(EnvironmentOption(env, reason))
    return options


def resolve_environment(profile: Profile, options: list[EnvironmentOption], wanted: str | None,
                        default: str = "") -> Environment:
    """The environment asked for (or the default); ChoiceError 400 naming why not."""
    usable = [o for o in options if o.unavailable is None]
    if wanted in (None, ""):
        preferred = [o for o in usable if o.id == default] or usable
        if not preferred:
            reasons = "; ".join(f"{o.id}: {o.unavailable}" for o in options) or "none fits it"
            raise ChoiceError(400, f"profile {profile.id!r} has no usable environment ({reasons})")
        return preferred[0].environment
    if not isinstance(wanted, str):
        raise ChoiceError(400, "environment must be an environment id (a string)")
    match = next((o for o in options if o.id == wanted), None)
    if match is None:
        fitting = ", ".join(o.id for o in options) or "none"
        raise ChoiceError(400, f"environment {wanted!r} is not offered with profile {profile.id!r} (it offers: {fitting})")
    if match.unavailable:
        raise ChoiceError(400, f"environment {wanted!r} cannot run: {match.unavailable}")
    return match.environment
