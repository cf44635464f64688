"""Profiles from settings: sizes, summaries, who may use which, the choice and its refusals."""

from __future__ import annotations

import pytest

from gpulab.compute.profiles import ChoiceError, GpuRequest, parse_size, resolve_profile, visible_profiles
from tests.support.gpu_profiles import CPU, GPU1, GPU2, profiles


def test_sizes():
    assert parse_size("8G") == 8 * 10**9 and parse_size("512Mi") == 512 * 2**20 and parse_size("1.5G") == 1.5e9
    assert parse_size(None) is None
    with pytest.raises(ValueError):
        parse_size("8 gigs")


def test_profiles_from_settings_and_their_summary():
    cpu, gpu1, gpu2 = profiles(CPU, GPU1, GPU2)
    assert cpu.memory_limit == 4 * 10**9 and not cpu.uses_gpu
    assert cpu.resources() == "2 CPUs · 4 GB"
    assert gpu2.gpu == GpuRequest(2, ("a100",), None) and gpu2.resources() == "2 × a100"


def test_who_may_use_which_profile():
    all_profiles = profiles(CPU, GPU1, GPU2)
    assert [p.id for p in visible_profiles(all_profiles, "carol", [])] == ["cpu"]
    assert [p.id for p in visible_profiles(all_profiles, "carol", ["ml"])] == ["cpu", "gpu-1"]
    assert [p.id for p in visible_profiles(all_profiles, "bob", [])] == ["cpu", "gpu-2"]
    assert [p.id for p in visible_profiles(all_profiles, "root", [], admin=True)] == ["cpu", "gpu-1", "gpu-2"]


@pytest.mark.parametrize("options, status, text", [
    ({"profile": "gpu-9"}, 400, "unknown profile 'gpu-9'"),
    ({"profile": "gpu-1"}, 403, "carol may not use profile 'gpu-1'"),
    ({"profile": ["cpu"]}, 400, "must be a profile id"),
])
def test_choices_that_are_refused(options, status, text):
    with pytest.raises(ChoiceError) as refused:
        resolve_profile(profiles(CPU, GPU1), options, "carol", [])
    assert refused.value.status == status and text in refused.value.message


def test_no_choice_means_the_default_or_the_first_allowed():
    assert resolve_profile(profiles(CPU, GPU1), {}, "carol", []).id == "cpu"
    only_gpu = profiles({**GPU1, "default": True}, {**CPU, "default": False, "allowed_groups": ["ml"]})
    with pytest.raises(ChoiceError) as none_allowed:
        resolve_profile(only_gpu, {}, "carol", [])
    assert none_allowed.value.status == 403
