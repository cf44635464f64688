"""A declared GPU inventory for tests, implementing the NVML reader's interface (GpuInventory).

`declared_inventory(folder, gpus, migs, utilization_file)` writes a small module into
`folder` and returns the setting for spawner.local.gpu_inventory; the hub and its services
import it (put `folder` on PYTHONPATH, which JupyterHub passes on to its services).
Utilisation (and memory in use) is read from `utilization_file` at every call, so a test drives
what the emulated NVML reports: {"uuid": percent} or {"uuid": {"utilization": percent,
"memory_used_mb": MiB}}. No real GPU is involved.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from gpulab.compute.inventory import Device


class DeclaredInventory:
    DEVICES: list[dict] = []
    UTILIZATION_FILE = ""

    def devices(self) -> list[Device]:
        return [Device(**item) for item in self.DEVICES]

    def _readings(self) -> dict:
        path = Path(self.UTILIZATION_FILE) if self.UTILIZATION_FILE else None
        readings = json.loads(path.read_text()) if path and path.exists() else {}
        return {u: r if isinstance(r, dict) else {"utilization": r} for u, r in readings.items()}

    def utilization(self, uuids: list[str]) -> dict[str, int]:
        readings = self._readings()
        return {u: readings[u]["utilization"] for u in uuids if "utilization" in readings.get(u, {})}

    def memory_used(self, uuids: list[str]) -> dict[str, int]:
        readings = self._readings()
        return {u: readings[u]["memory_used_mb"] for u in uuids if "memory_used_mb" in readings.get(u, {})}


def write_readings(path: Path, readings: dict) -> None:
    """What the emulated NVML reports next, written whole (a reader never sees half a file)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(readings))
    partial.replace(path)


def declared(gpus: int = 0, migs: int = 0, model: str = "NVIDIA A100-SXM4-80GB", driver: str = "570.86.15") -> list:
    """`gpus` whole GPUs and `migs` 1g.10gb slices."""
    devices = [dict(uuid=f"GPU-{i:08d}-test", model=model, memory_mb=81920, driver=driver, index=str(i))
               for i in range(gpus)]
    devices += [dict(uuid=f"MIG-{i:08d}-test", model=model, memory_mb=9728, driver=driver, index=f"{gpus}:{i}",
                     mig_profile="1g.10gb") for i in range(migs)]
    return devices


def declared_inventory(folder: Path, gpus: int = 0, migs: int = 0, utilization_file: Path | None = None) -> str:
    module = f"declared_gpus_{secrets.token_hex(4)}"
    (folder / f"{module}.py").write_text(
        "from tests.support.declared_gpus import DeclaredInventory\n\n\n"
        "class Inventory(DeclaredInventory):\n"
        f"    DEVICES = {declared(gpus, migs)!r}\n"
        f"    UTILIZATION_FILE = {str(utilization_file or '')!r}\n")
    return f"{module}:Inventory"
