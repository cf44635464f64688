"""Registering the scheduler with the hub, and the in-server part with each server (pure).

When the hub is root, the service runs as its own account and its root helper, the launcher
(launcher.py), starts runs as their owners; see the README's "Which process runs as whom".
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from gpulab.db import database_url
from gpulab.db.core import database_folder
from gpulab.extensions.mlflow.config import tracking_uri
from gpulab.hub_config.services.config import (
    add_managed_service, add_service_role, grant_server_tokens_access, grant_users_access, own_account,
    python_module_command, service_prefix, service_url,
)
from gpulab.hub_config.registry import Extension, NavLink
from gpulab.hub_config.typed_settings import Settings
from gpulab.spawner.backends import backend

from .launcher import socket_path
from .service_settings import ContainerEngineSettings, SchedulerServiceSettings, ServiceHub, ServiceSpawner

LAUNCHER = "scheduler-launcher"
LAUNCHER_MODULE = "gpulab.extensions.scheduler.launcher"

# What the scheduler asks the hub: who a user is and which groups they are in (projects);
# `tokens` mints each run's MLflow token in its owner's name (scoped to the MLflow service).
SCHEDULER_SCOPES = ["read:users", "read:groups"]
MLFLOW_SCOPES = ["tokens"]


def update_scheduler(s: Settings, c: Config) -> None:
    from .webhooks import allowed_networks

    allowed_networks(s.scheduler.notifications.webhook_allowed_networks)  # a bad entry stops here
    local = backend(s.spawner.backend).machine_local
    settings = service_settings(s).as_dict()
    # When the hub is root, the service runs as its own account, which owns the runs' files and
    # gpulab's SQLite database (the GPU ledger its runs claim from); runs start through the root
    # helper (launcher.py), which only a root hub starts.
    # (On Kubernetes the hub is not root, and runs are Jobs: nothing to separate.)
    owns = [str(Path(s.hub.data_dir, "scheduler"))]
    if not s.database.url:
        owns.append(str(database_folder(s)))
    account = own_account(s, "scheduler", owns)
    # display=False: the "Schedules" link (nav_links) replaces the hub's Services menu entry
    add_managed_service(c, s, "scheduler", python_module_command("gpulab.extensions.scheduler.service"), settings,
                        display=False, run_as=account if local else None)
    if local:  # as root only; no HTTP, no hub role
        add_managed_service(c, s, LAUNCHER, python_module_command(LAUNCHER_MODULE),
                            {**settings, "client": account.name, "socket": str(socket_path(s.hub.data_dir))},
                            display=False, listen=False, root_only=True)
    add_service_role(c, "scheduler", SCHEDULER_SCOPES + (MLFLOW_SCOPES if s.mlflow.enabled else []))
    grant_users_access(c, "scheduler")
    grant_server_tokens_access(c, "scheduler")


def service_settings(s: Settings) -> SchedulerServiceSettings:
    """What the service (and its launcher) gets from the hub's settings (pure)."""
    prefix = service_prefix(s, "scheduler")
    machine_local: dict = {}
    if s.spawner.backend == "docker":
        machine_local["container_engine"] = container_engine(s)
    if backend(s.spawner.backend).machine_local:
        machine_local["launcher_socket"] = str(socket_path(s.hub.data_dir))
    return SchedulerServiceSettings(
        profiles=s.profiles, environments=s.environments, quotas=s.quotas, scheduler=s.scheduler,
        spawner=ServiceSpawner(backend=s.spawner.backend, local=s.spawner.local, kubernetes=s.spawner.kubernetes),
        projects_kubernetes=s.projects.kubernetes,
        hub=ServiceHub(data_dir=s.hub.data_dir, log_level=s.hub.log_level),
        database_url=database_url(s),
        runner_url=f"{service_url(s, 'scheduler')}{prefix}runner/",
        mlflow_tracking_uri=tracking_uri(s) if s.mlflow.enabled else "",
        **machine_local,
    )


def container_engine(s: Settings) -> ContainerEngineSettings:
    """How runs reach the docker backend's engine, and the host folders they get (pure): the
    configured mounts, and the projects root, where a run's ~/projects links lead (mounted once
    it exists; every lookup inside still passes the project gates)."""
    from gpulab.extensions.projects.config import storage_settings
    from gpulab.extensions.projects.storage.local import storage_from_settings

    docker = s.spawner.docker
    projects_root = str(storage_from_settings(storage_settings(s)).root)
    return ContainerEngineSettings(host=docker.host, gpu_request=docker.gpu_request, mounts=(*docker.mounts, projects_root))


def nav_links(s: Settings) -> list[NavLink]:
    return [NavLink("Schedules", service_prefix(s, "scheduler"))]


def server_args(s: Settings) -> list[str]:
    # JupyterLab's scheduler UI in every server, forwarding to this service.
    return ["--ServerApp.jpserver_extensions=jupyter_scheduler=False",
            "--ServerApp.jpserver_extensions=gpulab.extensions.scheduler.lab=True"]


def enabled(s: Settings) -> bool:
    return s.scheduler.enabled


EXTENSION = Extension("scheduler", 20, update_scheduler, enabled=enabled, nav_links=nav_links, server_args=server_args)
