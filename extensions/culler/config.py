"""Registering the culler with the hub (pure; called from apply_config)."""

from __future__ import annotations

from traitlets.config import Config

from gpulab.hub_config.services.config import add_managed_service, add_service_role, own_account, python_module_command
from gpulab.hub_config.registry import Extension
from gpulab.hub_config.typed_settings import Settings
from gpulab.hub_config.urls import loopback_url
from gpulab.spawner.backends import backend

from .service_settings import CullerSettings

NAME = "culler"
# What the culler may do: see servers and their activity, ask a server about its kernels, stop it.
# admin:server_state: the GPUs a server holds are in its spawner's state; the REST API only reads
# it, and the culler may reach every server (access:servers) already, which says far more.
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "admin:server_state", "delete:servers",
                 "access:servers"]


def idle_timeouts(s: Settings) -> dict[str, int]:
    return {profile.id: profile.idle_timeout for profile in s.profiles}


def culling_needed(s: Settings) -> bool:
    """Culling is on and some profile has an idle timeout."""
    return s.culling.enabled and any(idle_timeouts(s).values())


def culler_service(s: Settings, c: Config) -> None:
    culling = s.culling
    gpus_here = backend(s.spawner.backend).machine_local  # servers' GPUs are this machine's
    settings = CullerSettings(
        timeouts=idle_timeouts(s),
        check_interval=culling.check_interval,
        gpu_utilization_threshold=culling.gpu_utilization_threshold,
        proxy_url=loopback_url(s),
        verify_proxy=not s.hub.tls.cert_file,
        gpu_inventory=s.spawner.local.gpu_inventory if gpus_here else "",
        log_level=s.hub.log_level,
    )
    # Its own account when the hub is root, owning nothing: the hub API and NVML (the GPU
    # device files are open to every user) are all it needs; no database, no folder.
    add_managed_service(c, s, NAME, python_module_command("gpulab.extensions.culler.service"), settings.as_dict(),
                        display=False, listen=False, run_as=own_account(s, NAME, []))
    add_service_role(c, NAME, CULLER_SCOPES)


EXTENSION = Extension("culler", 10, culler_service, enabled=culling_needed)
