"""Registering the usage service with the hub (pure; called from apply_config).

It reads the GPU ledger and writes the usage ledger, both in gpulab's database, and SQLite has
no finer permission than the file; so when the hub is root it runs as the account that already
owns that database, the scheduler's (owning only the database's folder itself), not as root.
It asks the hub for nothing: it only checks who is asking, through their own token, so its role
has no scopes.
"""

from __future__ import annotations

from traitlets.config import Config

from gpulab.db import database_url
from gpulab.db.core import database_folder
from gpulab.hub_config.services.config import (
    add_managed_service, grant_server_tokens_access, grant_users_access, own_account, python_module_command,
    service_prefix,
)
from gpulab.hub_config.registry import Extension, NavLink
from gpulab.hub_config.typed_settings import Settings
from gpulab.spawner.backends import backend

from .service_settings import UsageServiceSettings

NAME = "usage"
DATABASE_ACCOUNT = "scheduler"  # the service account that owns gpulab's SQLite database


def update_usage(s: Settings, c: Config) -> None:
    # this machine's GPUs, claimed through the ledger (the local and docker backends)
    local = backend(s.spawner.backend).machine_local
    settings = UsageServiceSettings(
        database_url=database_url(s),
        sample_interval=s.usage.sample_interval,
        retention_days=s.usage.retention_days,
        idle_threshold=s.culling.gpu_utilization_threshold,
        # utilisation from NVML (on Kubernetes no GPU is seen from here)
        gpu_inventory=s.spawner.local.gpu_inventory if local else "",
        # on Kubernetes: the pods of gpulab's namespace, and the DCGM exporter where there is one
        backend=s.spawner.backend,
        namespace=s.spawner.kubernetes.namespace,
        dcgm_exporter_url=s.usage.dcgm_exporter_url,
        log_level=s.hub.log_level,
    )
    # display=False: the "Usage" link (nav_links) replaces the hub's Services menu entry
    owns = [] if s.database.url else [str(database_folder(s))]
    add_managed_service(c, s, NAME, python_module_command("gpulab.extensions.usage.service"), settings.as_dict(),
                        display=False, run_as=own_account(s, DATABASE_ACCOUNT, owns) if local else None)
    grant_users_access(c, NAME)
    grant_server_tokens_access(c, NAME)
    # the hub's home page reads its user's GPUs' live readings from here (templates/home.html)
    c.JupyterHub.template_vars["gpulab_usage_url"] = service_prefix(s, NAME)


def nav_links(s: Settings) -> list[NavLink]:
    return [NavLink("Usage", service_prefix(s, NAME))]


def enabled(s: Settings) -> bool:
    return s.usage.enabled


EXTENSION = Extension("usage", 45, update_usage, enabled=enabled, nav_links=nav_links)
