"""Devices and profiles the unit tests share (literal settings, an A100 machine, MIG slices)."""

from __future__ import annotations

from pathlib import Path

from gpulab.compute.inventory import Device
from gpulab.compute.profiles import Profile, profiles_from_settings
from gpulab.hub_config.settings import complete


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
