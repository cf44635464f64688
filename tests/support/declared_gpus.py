"""A declared GPU inventory for tests: devices from GPULAB_TEST_GPUS (JSON), utilisation from a file.

Selected with `c.ProfileSpawnerMixin.inventory_class = "tests.support.declared_gpus:DeclaredInventory"`;
it implements the same interface as the NVML reader (gpulab.spawner.inventory.GpuInventory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gpulab.spawner.inventory import Device


class DeclaredInventory:
    def devices(self) -> list[Device]:
        return [Device(**item) for item in json.loads(os.environ.get("GPULAB_TEST_GPUS", "[]"))]

    def utilization(self, uuids: list[str]) -> dict[str, int]:
        path = os.environ.get("GPULAB_TEST_GPU_UTILIZATION")
        readings = json.loads(Path(path).read_text()) if path and Path(path).exists() else {}
        return {u: readings[u] for u in uuids if u in readings}


def declared(gpus: int = 0, migs: int = 0, model: str = "NVIDIA A100-SXM4-80GB", driver: str = "570.86.15") -> str:
    """GPULAB_TEST_GPUS for `gpus` whole GPUs and `migs` 1g.10gb slices."""
    devices = [dict(uuid=f"GPU-{i:08d}-test", model=model, memory_mb=81920, driver=driver, index=str(i))
               for i in range(gpus)]
    devices += [dict(uuid=f"MIG-{i:08d}-test", model=model, memory_mb=9728, driver=driver, index=f"{gpus}:{i}",
                     mig_profile="1g.10gb") for i in range(migs)]
    return json.dumps(devices)
