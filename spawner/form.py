"""The spawn page's form: what each profile and environment card shows (pure), and its HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from jinja2 import Environment as Jinja, FileSystemLoader, select_autoescape

from gpulab.compute.availability import Availability
from gpulab.compute.profile_options import options_from_form_fields
from gpulab.compute.profiles import Profile

from .environments import EnvironmentOption


@dataclass(frozen=True)
class ProfileCard:
    profile: Profile
    availability: Availability | None
    disabled_reason: str | None
    environments: list[EnvironmentOption] = field(default_factory=list)
    checked: bool = False

    @property
    def availability_note(self) -> str | None:
        """The live availability line, unless the disabled reason already says it."""
        if self.availability is None:
            return None
        if self.disabled_reason and self.availability.label in self.disabled_reason:
            return None
        return self.availability.label


def profile_cards(profiles: list[Profile], availability: dict[str, Availability | None],
                  quota_reason: dict[str, str | None], environments: dict[str, list[EnvironmentOption]],
                  previous: str | None = None) -> list[ProfileCard]:
    """One card per visible profile: disabled with the reason when it is full, over quota, or has no environment."""
    cards = []
    for profile in profiles:
        live = availability.get(profile.id)
        options = environments.get(profile.id, [])
        reason = None
        if live is not None and not live.enough:
            reason = f"full: {live.label}" if live.total else live.label
        elif quota_reason.get(profile.id):
            reason = quota_reason[profile.id]
        elif not any(o.unavailable is None for o in options):
            reasons = "; ".join(f"{o.environment.display_name}: {o.unavailable}" for o in options)
            reason = f"no environment can run it here ({reasons})" if reasons else "no environment fits it"
        cards.append(ProfileCard(profile, live, reason, options))
    enabled = [c for c in cards if c.disabled_reason is None]
    pick = (next((c for c in enabled if c.profile.id == previous), None)
            or next((c for c in enabled if c.profile.default), None)
            or (enabled[0] if enabled else None))
    return [ProfileCard(c.profile, c.availability, c.disabled_reason, c.environments, c is pick) for c in cards]


@cache
def _templates() -> Jinja:
    folder = str(resources.files("gpulab.spawner") / "templates")
    return Jinja(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]))


def render_form(cards: list[ProfileCard], default_environment: str = "", projects: list[str] | None = None,
                previous_project: str = "") -> str:
    """The form's HTML; a project field only for someone who can name a project."""
    return _templates().get_template("spawn_form.html").render(
        cards=cards, default_environment=default_environment, projects=projects or [],
        previous_project=previous_project)


def options_from_form(form: dict[str, list[str]]) -> dict:
    """The spawn form's fields as user_options: {"profile": ..., "environment": ..., "project": ...} and
    the chosen profile's `profile-option-<profile>--<option>` fields as KubeSpawner names them."""
    options = {key: form[key][0] for key in ("profile", "environment", "project") if form.get(key) and form[key][0]}
    if options.get("profile"):
        options.update(options_from_form_fields(form, options["profile"]))
    return options
