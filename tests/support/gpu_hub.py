"""Hubs with declared GPUs (tests/support/declared_gpus.py), their profiles and catalog, and users in groups."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.support.declared_gpus import declared_inventory


REPO = Path(__file__).resolve().parents[2]
VENV = str(Path(sys.executable).parent.parent)
PROFILES = [
    {"id": "cpu", "display_name": "CPU", "default": True, "cpu": {"limit": 1}, "memory": {"limit": "2G"}},
    {"id": "gpu-1", "display_name": "1 GPU", "gpu": {"count": 1}, "allowed_groups": ["ml"], "idle_timeout": 600},
    {"id": "gpu-2", "display_name": "2 GPUs", "gpu": {"count": 2}},
    {"id": "mig", "display_name": "MIG slice", "gpu": {"count": 1, "mig_profile": "1g.10gb"}},
    {"id": "vip", "display_name": "VIP", "allowed_users": ["vip"]},
]


def catalog(folder: Path) -> Path:
    """A catalog whose GPU environment runs from gpulab's own Python (it has jupyterhub)."""
    path = folder / "catalog.yaml"
    path.write_text(f"""
registry: test
environments:
  - {{id: cpu, display_name: CPU env, description: d, image: cpu, tag: t, gpu: false, python: "3.11",
     approx_size_gb: 1, local_python: ""}}
  - {{id: torch12, display_name: Torch CUDA 12, description: d, image: torch, tag: cuda12, gpu: true, cuda: "12.8",
     min_driver: "570.26", python: "3.11", approx_size_gb: 5, local_python: {VENV}}}
  - {{id: torch13, display_name: Torch CUDA 13, description: d, image: torch, tag: cuda13, gpu: true, cuda: "13.0",
     min_driver: "580.65.06", python: "3.11", approx_size_gb: 5, local_python: {VENV}}}
""")
    return path


def prepare_gpu_hub(factory, tmp_path, gpus=2, migs=2, quotas=None, name="hub", profiles=PROFILES, extra=None,
                    utilization_file=None):
    # The culler imports the inventory as its own account: not from pytest's private tmp_path.
    modules = Path(tempfile.mkdtemp(prefix="gpus-", dir=factory.root.parent))
    modules.chmod(0o755)
    inventory = declared_inventory(modules, gpus, migs, utilization_file)
    # So do the scheduler (the catalog) and the usage service (the utilisation readings).
    settings = {"profiles": profiles, "environments": {"catalog": str(catalog(modules))}, "quotas": quotas or {},
                "auth": {"admin_users": ["gpu-admin"]}, "spawner": {"local": {"gpu_inventory": inventory}}}
    return factory.prepare({**settings, **(extra or {})}, name=name,
                           extra_env={"PYTHONPATH": f"{REPO}{os.pathsep}{modules}"})


def start_gpu_hub(factory, tmp_path, gpus=2, migs=2, quotas=None, name="hub"):
    return prepare_gpu_hub(factory, tmp_path, gpus, migs, quotas, name).start()


def make_user(hub, name, groups=()):
    hub.create_user(name)
    for group in groups:
        hub.api.request("POST", f"hub/api/groups/{group}/users", {"users": [name]})
