"""Which devices fit a GPU request, availability labels, and the devices a claim takes."""

from __future__ import annotations

from gpulab.compute.availability import choose_devices, fits, profile_availability
from gpulab.compute.profiles import GpuRequest
from tests.support.gpu_profiles import A100, CPU, GPU1, GPU2, MIG, gpus, migs, profiles


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
