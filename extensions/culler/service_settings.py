"""What the hub hands the culler (GPULAB_SERVICE_SETTINGS), typed: config.py builds it, the
service reads it back at its entry."""

from __future__ import annotations

from gpulab.hub_config.typed_settings import FrozenMap, LogLevel, Model


class CullerSettings(Model):
    timeouts: FrozenMap[str, int] = {}  # seconds idle before a server is stopped, by profile id (0: never)
    check_interval: int = 60
    gpu_utilization_threshold: int = 10
    proxy_url: str = ""  # the proxy as seen from this machine, where servers answer
    verify_proxy: bool = True
    gpu_inventory: str = ""  # "" where no GPU is seen from here (Kubernetes)
    log_level: LogLevel = "INFO"
