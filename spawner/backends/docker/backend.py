"""The docker backend as a `ComputeBackend`: the local backend's accounts, homes and runs, in containers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from gpulab.spawner.backends.local.backend import configure_local_spawner, local_executor
from gpulab.spawner.backends.protocol import RunServices

if TYPE_CHECKING:  # typed settings (pydantic) only where a hub is configured
    from gpulab.hub_config.typed_settings import Settings


class DockerBackend:
    name = "docker"
    spawner_class = "gpulab.spawner.backends.docker.spawner.GpulabDockerSpawner"
    machine_local = True

    def configure(self, s: Settings, c: Config) -> None:
        # Servers' accounts and homes are the local backend's; their containers are its own.
        configure_local_spawner(s, c)
        docker, local = s.spawner.docker, s.spawner.local
        c.ContainerSpawner.account_prefix = local.account_prefix
        c.ContainerSpawner.home_root = local.home_root
        c.ContainerSpawner.data_dir = s.hub.data_dir
        c.ContainerSpawner.gpu_request = docker.gpu_request
        c.ContainerSpawner.mounts = list(docker.mounts)
        c.ContainerSpawner.pull_policy = docker.pull_policy
        c.ContainerSpawner.prefix = "gpulab"
        if docker.host:
            c.ContainerSpawner.client_kwargs = {"base_url": docker.host}

    def executor(self, services: RunServices):
        # The local executor, each runner wrapped in a container of its environment's image
        return local_executor(services, in_images=True)


BACKEND = DockerBackend()
