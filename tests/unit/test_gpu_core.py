"""The GPU spawner's pure core: profiles, choices, CUDA drivers, availability, environments, quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulab.compute.availability import choose_devices, fits, profile_availability
from gpulab.compute.inventory import Device
from gpulab.compute.profiles import (
    ChoiceError,
    GpuRequest,
    Profile,
    parse_size,
    profiles_from_settings,
    resolve_profile,
    visible_profiles,
)
from gpulab.compute.quotas import Usage, quota_problem
from gpulab.hub_config.settings import complete
from gpulab.images.catalog import Environment
from gpulab.spawner.checks import check_settings
from gpulab.spawner.cuda import TOOLKIT_DRIVER, incompatibility, minimum_driver
from gpulab.spawner.environments import EnvironmentOption, offered, options_for, resolve_environment

A100 = "NVIDIA A100-SXM4-80GB"
DRIVER = "570.86.15"


def gpus(n: int, model: str = A100) -> list[Device]:
    return [Device(f"GPU-{i:04d}", model, 81920, DRIVER, str(i)) for i in range(n)]


def migs(n: int, profile: str = "1g.10gb") -> list[Device]:
    return [Device(f"MIG-{i:04d}", A100, 9728, DRIVER, f"7:{i}", profile) for i in range(n)]


def profiles(*items: dict) -> tuple[Profile, ...]:
    return profiles_from_settings(complete({"profiles": list(items)}, Path("/")))


CPU = {"id": "cpu", "display_name": "CPU", "default": True, "cpu": {"limit": 2}, "memory": {"limit": "4G"}}
GPU1 = {"id": "gpu-1", "display_name": "1 GPU", "gpu": {"count": 1}, "allowed_groups": ["ml"]}
GPU2 = {"id": "gpu-2", "display_name": "2 A100", "gpu": {"count": 2, "models": ["a100"]}, "allowed_users": ["bob"]}
MIG = {"id": "mig", "display_name": "MIG slice", "gpu": {"count": 1, "mig_profile": "1g.10gb"}}


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


def test_cuda_driver_table_and_compatibility():
    assert minimum_driver("13.0") == "580.65.06" and minimum_driver("12.7") == "525.60.13"
    assert incompatibility("12.8", "570.26", "570.86.15") is None
    assert incompatibility("13.0", "580.65.06", "570.86.15") == (
        "CUDA 13.0 needs NVIDIA driver 580.65.06 or newer; this machine has 570.86.15")
    assert incompatibility("12.4", None, None) == "no NVIDIA driver on this machine"
    assert incompatibility(None, None, None) is None
    assert all(v.count(".") >= 1 for v in TOOLKIT_DRIVER.values())


def test_devices_fit_whole_gpu_and_mig_requests():
    assert fits(GpuRequest(1), gpus(1)[0]) and not fits(GpuRequest(1), migs(1)[0])
    assert fits(GpuRequest(1, mig_profile="1g.10gb"), migs(1)[0])
    assert not fits(GpuRequest(1, mig_profile="2g.20gb"), migs(1)[0])
    assert not fits(GpuRequest(1, ("H100",)), gpus(1)[0]) and fits(GpuRequest(1, ("a100",)), gpus(1)[0])


def test_availability_labels_and_fullness():
    cpu, gpu1, gpu2, mig = profiles(CPU, GPU1, GPU2, MIG)
    devices = gpus(8) + migs(7)
    claimed = {"GPU-0000", "GPU-0001", "GPU-0002", "GPU-0003", "GPU-0004", "GPU-0005", "GPU-0006", "MIG-0000", "MIG-0001"}
    assert profile_availability(cpu, devices, claimed) is None
    one = profile_availability(gpu1, devices, claimed)
    assert (one.label, one.enough) == (f"1 of 8 {A100} free", True)
    two = profile_availability(gpu2, devices, claimed)
    assert (two.free, two.enough) == (1, False)
    assert profile_availability(mig, devices, claimed).label == "5 of 7 MIG 1g.10gb slices free"
    assert profile_availability(gpu1, [], set()).label == "no matching GPUs on this machine"


def test_choose_devices_takes_the_lowest_free_indices_or_none():
    devices = gpus(4)
    assert [d.uuid for d in choose_devices(GpuRequest(2), devices, {"GPU-0000"})] == ["GPU-0001", "GPU-0002"]
    assert choose_devices(GpuRequest(2), devices, {"GPU-0000", "GPU-0001", "GPU-0002"}) is None


def env(id_, gpu, cuda=None, min_driver=None, local_python=""):
    return Environment(id=id_, display_name=id_, description="", image=f"r/{id_}:t", gpu=gpu, python="3.12",
                       approx_size_gb=1, local_python=local_python, cuda=cuda, min_driver=min_driver)


def test_environments_fit_profiles_and_the_driver():
    cpu, gpu1 = profiles(CPU, GPU1)
    catalog = [env("cpu", False), env("torch12", True, "12.8", "570.26", "/envs/torch12"),
               env("torch13", True, "13.0", "580.65.06", "/envs/torch13")]
    assert [o.id for o in options_for(cpu, catalog, DRIVER)] == ["cpu"]
    options = options_for(gpu1, catalog, DRIVER, python_exists=lambda path: path == "/envs/torch12")
    assert options[0] == EnvironmentOption(catalog[1], None)
    assert "needs NVIDIA driver 580.65.06" in options[1].unavailable
    missing = options_for(gpu1, catalog, "590.1", python_exists=lambda path: False)
    assert "is not installed on this machine (environments.local_python.torch12)" in missing[0].unavailable
    assert resolve_environment(gpu1, options, None).id == "torch12"
    with pytest.raises(ChoiceError, match="cannot run: CUDA 13.0 needs"):
        resolve_environment(gpu1, options, "torch13")
    with pytest.raises(ChoiceError, match="'cpu' is not offered with profile 'gpu-1'"):
        resolve_environment(gpu1, options, "cpu")
    with pytest.raises(ChoiceError, match="has no usable environment"):
        resolve_environment(gpu1, options_for(gpu1, catalog, None), None)


def test_offered_follows_settings_order_and_overrides():
    catalog = [env("a", False), env("b", True, "12.8")]
    chosen = offered(catalog, {"offer": ["b"], "local_python": {"b": "/opt/b"}})
    assert [(e.id, e.local_python) for e in chosen] == [("b", "/opt/b")]


QUOTAS = {"default": {"max_gpus": 2, "max_servers": 3}, "users": {"bob": {"max_gpus": None, "max_servers": 1}},
          "groups": {"ml": {"max_gpus": 4, "max_servers": None}}}


def test_quotas_for_users_and_shared_group_budgets():
    assert quota_problem(QUOTAS, "carol", [], 1, 1, Usage(1, 1), {}) is None
    assert quota_problem(QUOTAS, "carol", [], 2, 1, Usage(1, 1), {}) == (
        "over quota: carol holds 1 of 2 GPUs allowed and this needs 2 more")
    assert quota_problem(QUOTAS, "carol", [], 0, 1, Usage(0, 3), {}) == "over quota: carol runs 3 of 3 servers allowed"
    assert quota_problem(QUOTAS, "bob", [], 8, 0, Usage(6, 0), {}) is None  # bob's own entry: no GPU limit
    assert quota_problem(QUOTAS, "carol", ["ml"], 1, 1, Usage(0, 0), {"ml": Usage(4, 2)}) == (
        "over quota: group ml holds 4 of 4 GPUs allowed and this needs 1 more")


def test_cross_checks_name_the_key():
    values = complete({"profiles": [
        {"id": "a", "display_name": "A", "default": True, "gpu": {"count": 0, "models": ["A100"]}},
        {"id": "a", "display_name": "B", "default": True, "cpu": {"guarantee": 4, "limit": 2}},
        {"id": "c", "display_name": "C", "gpu": {"count": 2, "mig_profile": "1g.10gb"}, "environments": ["nope"]},
    ], "environments": {"offer": ["cpu"], "default": "gpu-thing"}}, Path("/"))
    found = {(p.path, p.message.split(" (")[0]) for p in check_settings(values)}
    assert ("profiles[0].gpu.models", "models need gpu.count of at least 1") in found
    assert ("profiles[1].id", "'a' is already the id of profiles[0]") in found
    assert ("profiles[1].default", "only one profile can be the default; profiles[0] is") in found
    assert ("profiles[1].cpu.guarantee", "4 is more than the limit 2") in found
    assert ("profiles[2].gpu.count", "a MIG profile takes exactly one slice: set gpu.count to 1") in found
    assert ("profiles[2].environments", "'nope' is not in the catalog") in found
    assert ("environments.default", "'gpu-thing' is not offered") in found


def test_spawn_form_says_each_reason_once():
    """Issue 15 item 4: "no matching GPUs on this machine" was printed twice on a disabled card."""
    from gpulab.spawner.form import profile_cards, render_form

    cpu, gpu1, gpu2 = profiles(CPU, GPU1, GPU2)
    devices = gpus(2)
    availability = {p.id: profile_availability(p, devices if p is not gpu1 else [], {"GPU-0000"}) for p in (cpu, gpu1, gpu2)}
    html = render_form(profile_cards([cpu, gpu1, gpu2], availability, {}, {}))
    assert html.count("no matching GPUs on this machine") == 1
    assert html.count(f"1 of 2 {A100} free") == 1  # gpu-2 is full: said once, in its reason
    assert f"Unavailable: full: 1 of 2 {A100} free" in html


def test_an_inventory_named_by_its_module_before_the_compute_layer_still_loads():
    from gpulab.compute.inventory import NvmlInventory, load_inventory

    assert isinstance(load_inventory("gpulab.spawner.inventory:NvmlInventory"), NvmlInventory)
