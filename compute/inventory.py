"""The GPUs of this machine: whole GPUs and MIG instances, from NVML.

`GpuInventory` is the one interface the spawner, the culler and the scheduler read. The
NVML reader is the production one; a machine without the NVIDIA driver has an empty
inventory. Another reader (tests use a declared list) is selected by import path.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Device:
    uuid: str  # "GPU-..." or "MIG-...": what CUDA_VISIBLE_DEVICES takes
    model: str  # e.g. "NVIDIA A100-SXM4-80GB"
    memory_mb: int
    driver: str  # e.g. "570.86.15"
    index: str  # "0", or "0:1" for MIG instance 1 of GPU 0
    mig_profile: str | None = None  # e.g. "1g.10gb" for a MIG instance

    @property
    def is_mig(self) -> bool:
        return self.mig_profile is not None


class GpuInventory(Protocol):
    def devices(self) -> list[Device]:
        """Every allocatable device: whole GPUs not in MIG mode, and MIG instances."""

    def utilization(self, uuids: list[str]) -> dict[str, int]:
        """Current utilisation (percent) of each device that can be measured."""

    def memory_used(self, uuids: list[str]) -> dict[str, int]:
        """Memory in use (MiB) on each device that can be measured (MIG instances included)."""


MIG_NAME = re.compile(r"MIG (\d+g\.\d+gb(?:\+me)?)")


class NvmlInventory:
    """Reads NVIDIA's management library (nvidia-ml-py). No driver means no devices."""

    def __init__(self):
        self._lock = threading.Lock()
        self._started = False

    def _nvml(self):
        import pynvml

        with self._lock:
            if not self._started:
                pynvml.nvmlInit()
                self._started = True
        return pynvml

    def devices(self) -> list[Device]:
        try:
            nvml = self._nvml()
        except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no GPUs here
            return []
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        found = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            model = _text(nvml.nvmlDeviceGetName(handle))
            if _mig_enabled(nvml, handle):
                found += _mig_devices(nvml, handle, i, model, driver)
            else:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
                found.append(Device(_text(nvml.nvmlDeviceGetUUID(handle)), model, memory, driver, str(i)))
        return found

    def utilization(self, uuids: list[str]) -> dict[str, int]:
        # MIG instances report no utilisation: unknown, left out
        return self._read_each(uuids, lambda nvml, handle: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))

    def memory_used(self, uuids: list[str]) -> dict[str, int]:
        return self._read_each(uuids, lambda nvml, handle: memory_used_mb(nvml, handle))

    def _read_each(self, uuids: list[str], read) -> dict[str, int]:
        """`read(nvml, handle)` for each device that answers; none without a driver, and a device
        gone since it was listed, or that cannot report this, is left out."""
        try:
            nvml = self._nvml()
        except Exception:
            return {}
        readings = {}
        for uuid in uuids:
            try:
                readings[uuid] = read(nvml, nvml.nvmlDeviceGetHandleByUUID(uuid))
            except Exception:
                continue
        return readings


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def memory_used_mb(nvml, handle) -> int:
    """Memory in use as nvidia-smi counts it. NVML's first memory call counts the driver's own
    reservation as used (616 MiB on an idle H200 with driver 580); the v2 call (drivers 510 and
    later) reports it apart. Where v2 is refused (an older driver or nvidia-ml-py), v1's figure."""
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
    except Exception:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
    return int(info.used // 2**20)


def _mig_enabled(nvml, handle) -> bool:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except Exception:  # GPUs without MIG support
        return False
    return current == nvml.NVML_DEVICE_MIG_ENABLE


def _mig_devices(nvml, handle, gpu_index: int, model: str, driver: str) -> list[Device]:
    found = []
    for j in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
        except Exception:  # that slot holds no instance
            continue
        name = _text(nvml.nvmlDeviceGetName(mig))
        match = MIG_NAME.search(name)
        memory = nvml.nvmlDeviceGetMemoryInfo(mig).total // 2**20
        found.append(Device(_text(nvml.nvmlDeviceGetUUID(mig)), model, memory, driver,
                            f"{gpu_index}:{j}", match.group(1) if match else name))
    return found


class CachedInventory:
    """The devices change only when an admin reconfigures the machine: read them once a minute."""

    def __init__(self, source: GpuInventory, ttl: float = 60.0, clock=time.monotonic):
        self.source = source
        self.ttl = ttl
        self.clock = clock
        self._devices: list[Device] | None = None
        self._read_at = 0.0

    def devices(self) -> list[Device]:
        if self._devices is None or self.clock() - self._read_at > self.ttl:
            self._devices = self.source.devices()
            self._read_at = self.clock()
        return self._devices

    def utilization(self, uuids: list[str]) -> dict[str, int]:
        return self.source.utilization(uuids)

    def memory_used(self, uuids: list[str]) -> dict[str, int]:
        return self.source.memory_used(uuids)

    def driver(self) -> str | None:
        devices = self.devices()
        return devices[0].driver if devices else None


# Settings written before the compute layer name the inventory's old module; they keep working.
MOVED_MODULES = {"gpulab.spawner.inventory": "gpulab.compute.inventory"}


def load_inventory(import_path: str) -> GpuInventory:
    """An inventory class by "module:Class" or "module.Class" path, instantiated."""
    module, _, name = import_path.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(MOVED_MODULES.get(module, module)), name)()
