"""Profile options and z2jh's profile keys in gpulab's profiles (issue 20, items 1 and 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulab.compute.profile_options import OptionError, fill_value, options_from_settings, resolve_options
from gpulab.compute.profiles import profiles_from_settings
from gpulab.hub_config.settings import complete, validate
from gpulab.hub_config.typed_settings import Settings
from gpulab.images.catalog import Environment
from gpulab.spawner.checks import check_settings
from gpulab.spawner.environments import EnvironmentOption
from gpulab.spawner.form import options_from_form, profile_cards, render_form

IMAGE = {"display_name": "Image",
         "choices": {"base": {"display_name": "Base", "kubespawner_override": {"image": "jupyter/base-notebook"}},
                     "scipy": {"display_name": "SciPy", "default": True,
                               "kubespawner_override": {"image": "jupyter/scipy-notebook"}}},
         "unlisted_choice": {"enabled": True, "validation_regex": "^jupyter/.+:.+$",
                             "validation_message": "an image jupyter/<name>:<tag>",
                             "kubespawner_override": {"image": "{value}", "extra_labels": {"tag-of": "{value}", "x": "{other}"}}}}
OPTIONS = options_from_settings({"image": IMAGE})


def test_a_listed_choice_the_default_and_an_unlisted_value():
    (chosen,) = resolve_options("p", OPTIONS, {"image": "base"})
    assert (chosen.value, chosen.listed, chosen.kubespawner_override) == ("base", True, {"image": "jupyter/base-notebook"})
    (chosen,) = resolve_options("p", OPTIONS, {})
    assert chosen.value == "scipy"
    (chosen,) = resolve_options("p", OPTIONS, {"image--unlisted-choice": "jupyter/r-notebook:2024", "image": "base"})
    assert chosen.kubespawner_override == {"image": "jupyter/r-notebook:2024",
                                           "extra_labels": {"tag-of": "jupyter/r-notebook:2024", "x": "{other}"}}


@pytest.mark.parametrize("asked, message", [
    ({"image": "gpu"}, "unknown choice 'gpu' for option 'image' of profile 'p'; choices: base, scipy"),
    ({"image--unlisted-choice": "evil/miner:1"}, "'evil/miner:1' is refused for option 'image' of profile 'p': an image jupyter/<name>:<tag>"),
    ({"image": 3}, "option 'image' of profile 'p' must be a string"),
])
def test_refused_choices_say_why(asked, message):
    with pytest.raises(OptionError) as refused:
        resolve_options("p", OPTIONS, asked)
    assert str(refused.value) == message


def test_an_unlisted_value_needs_the_unlisted_choice_enabled():
    closed = options_from_settings({"image": {**IMAGE, "unlisted_choice": {"enabled": False}}})
    with pytest.raises(OptionError, match="takes no value of your own; choices: base, scipy"):
        resolve_options("p", closed, {"image--unlisted-choice": "jupyter/r:1"})
    assert fill_value(["{value}", {"{value}": 1}], "v") == ["v", {"v": 1}]


def test_the_form_carries_the_chosen_profile_s_options_kubespawner_s_way():
    form = {"profile": ["gpu"], "environment": ["torch"], "profile-option-gpu--image": ["base"],
            "profile-option-gpu--image--unlisted-choice": [""], "profile-option-cpu--image": ["scipy"]}
    assert options_from_form(form) == {"profile": "gpu", "environment": "torch", "image": "base"}
    form["profile-option-gpu--image--unlisted-choice"] = ["jupyter/r:1"]
    assert options_from_form(form)["image--unlisted-choice"] == "jupyter/r:1"


def settings(*profiles, backend="kubernetes") -> Settings:
    return Settings.from_values(complete({"profiles": list(profiles), "spawner": {"backend": backend}}, Path("/")))


def test_the_spawn_form_shows_each_option():
    (profile,) = profiles_from_settings(settings({"id": "gpu", "display_name": "GPU", "profile_options": {"image": IMAGE}}))
    torch = Environment("torch", "Torch", "", "torch:1", True, "3.12", 5, "")
    html = render_form(profile_cards([profile], {}, {}, {"gpu": [EnvironmentOption(torch)]}))
    assert '<select class="form-select form-select-sm" name="profile-option-gpu--image"' in html
    assert '<option value="scipy" selected>SciPy</option>' in html
    assert 'name="profile-option-gpu--image--unlisted-choice"' in html


def test_z2jh_profile_keys_slug_derived_id_and_kubespawner_override():
    values = settings({"display_name": "Data Science (R & Python)", "kubespawner_override": {"cpu_limit": 4}},
                      {"slug": "gpu", "display_name": "GPU", "profile_options": {"image": IMAGE}})
    assert validate({"profiles": [{"slug": "gpu", "display_name": "GPU", "kubespawner_override": {"image": "x"}}]}) == []
    first, second = profiles_from_settings(values)
    assert (first.id, second.id) == ("data-science-r-python", "gpu")
    assert first.kubespawner_override == {"cpu_limit": 4} and second.options == OPTIONS
    assert [p.path for p in check_settings(values) if "profiles" in p.path] == []


def test_bad_z2jh_keys_are_refused_with_their_path():
    found = {(p.path, p.message) for p in check_settings(settings(
        {"id": "a", "slug": "b", "display_name": "A", "kubespawner_override": {"cpu_limt": 4, "profile_list": []}},
        {"id": "c", "display_name": "C", "profile_options": {"size": {"display_name": "Size"}}}))}
    assert ("profiles[0].slug", "'b' differs from id 'a': give one of the two") in found
    assert ("profiles[0].kubespawner_override.cpu_limt", "not a KubeSpawner setting") in found
    assert ("profiles[0].kubespawner_override.profile_list",
            "gpulab builds this from `profiles`; a profile cannot override it") in found
    assert ("profiles[1].profile_options.size", "offers nothing: give choices or enable unlisted_choice") in found
    local = check_settings(settings({"id": "a", "display_name": "A", "kubespawner_override": {"image": "x"}}, backend="local"))
    assert [(p.path, p.message) for p in local if p.path.startswith("profiles")] == [
        ("profiles[0].kubespawner_override", "KubeSpawner settings apply to pods: they need spawner.backend kubernetes")]
