"""A hub for the usage tests: one emulated GPU whose live readings are in a file the test writes,
budgets for a user and a project, and the usage service's API as a user asks it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests

from tests.support.declared_gpus import write_readings
from tests.support.gpu_hub import prepare_gpu_hub


GPU = "GPU-00000000-test"
SAVER_BUDGET = 1  # GPU-hours a month
VISION_BUDGET = 5
PROFILES = [
    {"id": "cpu", "display_name": "CPU", "default": True},
    {"id": "gpu", "display_name": "1 GPU", "gpu": {"count": 1}, "cpu": {"limit": 2}},
]


def usage_get(hub, token: str, path: str, **params) -> requests.Response:
    return requests.get(f"{hub.url}services/usage/{path}", params=params,
                        headers={"Authorization": f"token {token}"}, timeout=30)


def live_reading(hub, token: str) -> dict | None:
    answer = usage_get(hub, token, "api/live")
    devices = answer.json()["devices"] if answer.status_code == 200 else []
    return devices[0] if devices else None


def start_usage_hub(hub_factory, hubs_root):
    """A hub with one emulated GPU at 90%, sampled every second."""
    folder = Path(tempfile.mkdtemp(prefix="gpus-", dir=hubs_root))
    folder.chmod(0o755)
    readings = folder / "utilization.json"
    write_readings(readings, {GPU: {"utilization": 90, "memory_used_mb": 1000}})
    hub = prepare_gpu_hub(hub_factory, folder, gpus=1, migs=0, name="usage", profiles=PROFILES,
                          extra={"usage": {"sample_interval": 1}, "culling": {"gpu_utilization_threshold": 10}},
                          quotas={"users": {"saver": {"gpu_hours_per_month": SAVER_BUDGET}},
                                  "projects": {"vision": {"gpu_hours_per_month": VISION_BUDGET}}},
                          utilization_file=readings)
    hub.readings = readings
    return hub.start()
