"""What the hub hands the usage service (GPULAB_SERVICE_SETTINGS), typed: config.py builds it,
the service reads it back at its entry."""

from __future__ import annotations

from typing import Literal

from gpulab.hub_config.typed_settings import LogLevel, Model


class UsageServiceSettings(Model):
    database_url: str = ""
    sample_interval: int = 10
    retention_days: int = 400
    idle_threshold: int = 10  # culling.gpu_utilization_threshold
    gpu_inventory: str = ""  # this machine's GPUs (local and docker backends); "" on Kubernetes
    backend: Literal["local", "docker", "kubernetes"] = "local"
    namespace: str = ""  # Kubernetes: the pods' namespace ("" the one the service runs in)
    dcgm_exporter_url: str = ""
    log_level: LogLevel = "INFO"
