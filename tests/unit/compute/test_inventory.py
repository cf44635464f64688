"""The GPU inventory: loading it by import path, and NVML's reader against a stand-in."""

from __future__ import annotations

import sys
import types
from typing import Any

from gpulab.compute.inventory import NvmlInventory
from gpulab.compute.usage import Reading
from gpulab.compute.usage_sampler import read_devices


class NvmlError(Exception):
    pass


def stand_in_nvml() -> types.ModuleType:
    """GPU 0 whole (busy 87%, 30 GiB used); GPU 1 in MIG mode with one 1g.10gb instance, which
    reports memory but no utilisation, as NVML does. NVML's v1 memory call counts the driver's
    reservation as used (seen on a real H200: v1 2009 MiB, v2 and nvidia-smi 1395 MiB); the
    instance here answers only v1."""
    gib = 2**30
    handles = {"GPU-a": ("gpu", 87, 30 * gib, 80 * gib), "MIG-b": ("mig", None, 2 * gib, 10 * gib)}
    nvml: Any = types.ModuleType("pynvml")  # (attributes set one by one below)
    nvml.NVML_DEVICE_MIG_ENABLE = 1
    nvml.nvmlInit = lambda: None
    nvml.nvmlSystemGetDriverVersion = lambda: "570.86.15"
    nvml.nvmlDeviceGetCount = lambda: 2
    nvml.nvmlDeviceGetHandleByIndex = lambda i: ["GPU-a", "parent-1"][i]
    nvml.nvmlDeviceGetName = lambda h: "NVIDIA A100-SXM4-80GB MIG 1g.10gb" if h == "MIG-b" else "NVIDIA A100-SXM4-80GB"
    nvml.nvmlDeviceGetMigMode = lambda h: (1, 1) if h == "parent-1" else (0, 0)
    nvml.nvmlDeviceGetMaxMigDeviceCount = lambda h: 2
    nvml.nvmlDeviceGetUUID = lambda h: h

    def mig_by_index(handle, j):
        if j:
            raise NvmlError("no instance in this slot")
        return "MIG-b"

    def by_uuid(uuid):
        if uuid not in handles:
            raise NvmlError("not found")
        return uuid

    def utilisation(handle):
        if handles[handle][1] is None:
            raise NvmlError("not supported on MIG instances")
        return types.SimpleNamespace(gpu=handles[handle][1], memory=0)

    nvml.nvmlDeviceGetMigDeviceHandleByIndex = mig_by_index
    nvml.nvmlDeviceGetHandleByUUID = by_uuid
    nvml.nvmlDeviceGetUtilizationRates = utilisation
    reserved = 616 * 2**20  # what driver 580 keeps on an H200, counted as used by NVML's v1 call
    nvml.nvmlMemory_v2 = 0x2000028

    def memory(handle, version=None):
        used, total = handles[handle][2], handles[handle][3]
        if version is None:
            return types.SimpleNamespace(used=used + reserved, total=total)
        if handle == "MIG-b":
            raise NvmlError("v2 not supported here")
        return types.SimpleNamespace(used=used, reserved=reserved, total=total)

    nvml.nvmlDeviceGetMemoryInfo = memory
    return nvml


def test_nvml_reads_utilisation_where_it_reports_it_and_memory_for_mig_instances_too(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", stand_in_nvml())
    inventory = NvmlInventory()
    assert [(d.uuid, d.index, d.mig_profile) for d in inventory.devices()] == [("GPU-a", "0", None),
                                                                                ("MIG-b", "1:0", "1g.10gb")]
    readings = read_devices(inventory, ["GPU-a", "MIG-b", "GPU-gone"])
    # v2's figure where it answers (as nvidia-smi shows), v1's where it is refused
    assert readings == {"GPU-a": Reading(87, 30 * 1024), "MIG-b": Reading(None, 2 * 1024 + 616)}


def test_an_inventory_named_by_its_module_before_the_compute_layer_still_loads():
    from gpulab.compute.inventory import NvmlInventory, load_inventory

    assert isinstance(load_inventory("gpulab.spawner.inventory:NvmlInventory"), NvmlInventory)
