"""Registering the culler with the hub (pure; called from apply_config)."""

from __future__ import annotations

from traitlets.config import Config

from gpulab.db import database_url
from gpulab.extensions.service.config import add_managed_service, add_service_role, python_module_command
from gpulab.hub_config.registry import Extension
from gpulab.hub_config.urls import loopback_url

# What the culler may do: see servers and their activity, ask a server about its kernels, stop it.
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers", "access:servers"]


def culler_service(values: dict, c: Config) -> None:
    culling = values["culling"]
    timeouts = {p["id"]: p["idle_timeout"] for p in values["profiles"]}
    if not culling["enabled"] or not any(timeouts.values()):
        return
    local = values["spawner"]["backend"] == "local"
    settings = {
        "timeouts": timeouts,
        "check_interval": culling["check_interval"],
        "gpu_utilization_threshold": culling["gpu_utilization_threshold"],
        "proxy_url": loopback_url(values),
        "verify_proxy": not values["hub"]["tls"]["cert_file"],
        "database_url": database_url(values) if local else "",
        "gpu_inventory": values["spawner"]["local"]["gpu_inventory"],
        "log_level": values["hub"]["log_level"],
    }
    add_managed_service(c, values, "culler", python_module_command("gpulab.spawner.culler_service"), settings,
                        display=False, listen=False)
    add_service_role(c, "culler", CULLER_SCOPES)


EXTENSION = Extension("culler", 10, culler_service)
