"""Registering the culler with the hub (pure; called from apply_config)."""

from __future__ import annotations

from traitlets.config import Config

from gpulab.extensions.service.config import add_managed_service, add_service_role, own_account, python_module_command
from gpulab.hub_config.registry import Extension
from gpulab.hub_config.urls import loopback_url

NAME = "culler"
# What the culler may do: see servers and their activity, ask a server about its kernels, stop it.
# admin:server_state: the GPUs a server holds are in its spawner's state; the REST API only reads
# it, and the culler may reach every server (access:servers) already, which says far more.
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "admin:server_state", "delete:servers",
                 "access:servers"]


def idle_timeouts(values: dict) -> dict[str, int]:
    return {p["id"]: p["idle_timeout"] for p in values["profiles"]}


def culling_needed(values: dict) -> bool:
    """Culling is on and some profile has an idle timeout."""
    return values["culling"]["enabled"] and any(idle_timeouts(values).values())


def culler_service(values: dict, c: Config) -> None:
    culling = values["culling"]
    gpus_here = values["spawner"]["backend"] in ("local", "docker")  # servers' GPUs are this machine's
    settings = {
        "timeouts": idle_timeouts(values),
        "check_interval": culling["check_interval"],
        "gpu_utilization_threshold": culling["gpu_utilization_threshold"],
        "proxy_url": loopback_url(values),
        "verify_proxy": not values["hub"]["tls"]["cert_file"],
        "gpu_inventory": values["spawner"]["local"]["gpu_inventory"] if gpus_here else "",
        "log_level": values["hub"]["log_level"],
    }
    # Its own account when the hub is root, owning nothing: the hub API and NVML (the GPU
    # device files are open to every user) are all it needs; no database, no folder.
    add_managed_service(c, values, NAME, python_module_command("gpulab.extensions.culler.service"), settings,
                        display=False, listen=False, run_as=own_account(values, NAME, []))
    add_service_role(c, NAME, CULLER_SCOPES)


EXTENSION = Extension("culler", 10, culler_service, enabled=culling_needed)
