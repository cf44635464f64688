"""What the hub hands the scheduler service and its launcher (GPULAB_SERVICE_SETTINGS), typed.

config.py builds it from the hub's settings and sends it as JSON; the service and the launcher
read it back into this model at their entry. The sections are gpulab.yaml's own (typed_settings);
the rest is derived by the hub (URLs, the database, the launcher's socket).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gpulab.hub_config.typed_settings import (
    DEFAULT_PROFILE,
    Environments,
    LogLevel,
    Model,
    Profile,
    ProjectsKubernetes,
    Quotas,
    Scheduler,
    SpawnerKubernetes,
    SpawnerLocal,
)


class ServiceSpawner(Model):
    """The spawner settings runs need: the backend, its accounts and homes, its cluster."""

    backend: Literal["local", "docker", "kubernetes"] = "local"
    local: SpawnerLocal = Field(default_factory=SpawnerLocal)
    kubernetes: SpawnerKubernetes = Field(default_factory=SpawnerKubernetes)


class ServiceHub(Model):
    data_dir: str = ""
    log_level: LogLevel = "INFO"


class ContainerEngineSettings(Model):
    """How runs reach the docker backend's engine (config.container_engine)."""

    host: str = ""
    gpu_request: Literal["nvidia", "cdi"] = "nvidia"
    mounts: tuple[str, ...] = ()


class SchedulerServiceSettings(Model):
    profiles: tuple[Profile, ...] = Field(default_factory=lambda: (DEFAULT_PROFILE,))
    environments: Environments = Field(default_factory=Environments)
    quotas: Quotas = Field(default_factory=Quotas)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    spawner: ServiceSpawner = Field(default_factory=ServiceSpawner)
    projects_kubernetes: ProjectsKubernetes = Field(default_factory=ProjectsKubernetes)
    hub: ServiceHub = Field(default_factory=ServiceHub)
    database_url: str = ""
    runner_url: str = ""
    mlflow_tracking_uri: str = ""
    container_engine: ContainerEngineSettings | None = None  # the docker backend only
    launcher_socket: str | None = None  # this machine's backends only
    # the launcher's own (a root helper): the service's account, the socket it listens on
    client: str | None = None
    socket: str | None = None
