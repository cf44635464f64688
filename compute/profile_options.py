"""Profile options (pure): choices a user makes within a profile, as KubeSpawner's `profile_options`.

Each option offers named choices, and optionally an unlisted (free-text) choice checked
against a regular expression. A request names them KubeSpawner's way: `{"image": "minimal"}`
for a listed choice, `{"image--unlisted-choice": "jupyter/scipy-notebook:2024"}` for an
unlisted one; the spawn form's `profile-option-<profile>--<option>` fields become the same.
What a choice changes (`kubespawner_override`, with `{value}` replaced by the unlisted text) is
applied by the Kubernetes backend after the profile's own overrides, in option order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic only where settings are read (runners and servers import this module too)
    from gpulab.hub_config.typed_settings import ProfileOption as OptionSettings

UNLISTED = "--unlisted-choice"


@dataclass(frozen=True)
class Choice:
    name: str
    display_name: str
    default: bool = False
    kubespawner_override: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Unlisted:
    enabled: bool = False
    display_name: str = ""
    display_name_in_choices: str = "Other..."
    validation_regex: str = ""
    validation_message: str = ""
    kubespawner_override: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ProfileOption:
    name: str
    display_name: str
    choices: tuple[Choice, ...] = ()
    unlisted: Unlisted = Unlisted()

    @property
    def default_choice(self) -> Choice | None:
        """The choice marked default, else the first (as KubeSpawner picks)."""
        return next((c for c in self.choices if c.default), self.choices[0] if self.choices else None)


@dataclass(frozen=True)
class ChosenOption:
    option: str
    value: str
    listed: bool
    kubespawner_override: dict = field(default_factory=dict, compare=False)


class OptionError(ValueError):
    """A choice that is refused (the spawner answers 400 with the message)."""


def options_from_settings(settings: Mapping[str, OptionSettings | Mapping[str, Any]]) -> tuple[ProfileOption, ...]:
    """The `profile_options` of one profile's settings (typed, or dicts typed here: defaults as the
    schema describes them)."""
    from gpulab.hub_config.typed_settings import ProfileOption as OptionSettings
    from gpulab.hub_config.typed_settings import plain

    options = []
    for name, given in settings.items():
        item = given if isinstance(given, OptionSettings) else OptionSettings.model_validate(given)
        unlisted = item.unlisted_choice
        options.append(ProfileOption(
            name=name,
            display_name=item.display_name,
            choices=tuple(Choice(key, c.display_name, c.default, plain(c.kubespawner_override))
                          for key, c in item.choices.items()),
            unlisted=Unlisted(unlisted.enabled, unlisted.display_name, unlisted.display_name_in_choices,
                              unlisted.validation_regex, unlisted.validation_message,
                              plain(unlisted.kubespawner_override)),
        ))
    return tuple(options)


def option_keys(options: tuple[ProfileOption, ...]) -> set[str]:
    """The user_options keys these options read."""
    return {o.name for o in options} | {o.name + UNLISTED for o in options}


class _KeepOthers(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def fill_value(template, value: str):
    """`{value}` replaced in every string of `template`, other fields left as they are (KubeSpawner's recursive_format)."""
    if isinstance(template, str):
        return template.format_map(_KeepOthers(value=value))
    if isinstance(template, list):
        return [fill_value(item, value) for item in template]
    if isinstance(template, dict):
        return {fill_value(k, value): fill_value(v, value) for k, v in template.items()}
    return template


def resolve_options(profile_id: str, options: tuple[ProfileOption, ...], asked: dict) -> tuple[ChosenOption, ...]:
    """What the user chose for each option (the default where they chose nothing); OptionError if refused."""
    chosen = []
    for option in options:
        listed, unlisted = asked.get(option.name), asked.get(option.name + UNLISTED)
        for key, value in ((option.name, listed), (option.name + UNLISTED, unlisted)):
            if value is not None and not isinstance(value, str):
                raise OptionError(f"option {key!r} of profile {profile_id!r} must be a string")
        names = ", ".join(c.name for c in option.choices) or "none"
        if unlisted:
            rule = option.unlisted
            if not rule.enabled:
                raise OptionError(f"option {option.name!r} of profile {profile_id!r} takes no value of your own; "
                                  f"choices: {names}")
            if rule.validation_regex and not re.match(rule.validation_regex, unlisted):
                why = rule.validation_message or f"it must match {rule.validation_regex}"
                raise OptionError(f"{unlisted!r} is refused for option {option.name!r} of profile {profile_id!r}: {why}")
            chosen.append(ChosenOption(option.name, unlisted, False, fill_value(rule.kubespawner_override, unlisted)))
        elif listed:
            choice = next((c for c in option.choices if c.name == listed), None)
            if choice is None:
                raise OptionError(f"unknown choice {listed!r} for option {option.name!r} of profile {profile_id!r}; "
                                  f"choices: {names}")
            chosen.append(ChosenOption(option.name, choice.name, True, choice.kubespawner_override))
        elif option.default_choice is not None:
            choice = option.default_choice
            chosen.append(ChosenOption(option.name, choice.name, True, choice.kubespawner_override))
        else:
            raise OptionError(f"option {option.name!r} of profile {profile_id!r} needs a value "
                              f"({option.name + UNLISTED!r}: it has no listed choices)")
    return tuple(chosen)


def options_from_form_fields(form: dict[str, list[str]], profile_id: str) -> dict[str, str]:
    """The chosen profile's `profile-option-<profile>--<option>` fields as user_options (empty ones left out).

    Other profiles' fields are the form's other cards, not choices: they are not read."""
    prefix = f"profile-option-{profile_id}--"
    return {key[len(prefix):]: values[0] for key, values in form.items()
            if key.startswith(prefix) and values and values[0] != ""}
