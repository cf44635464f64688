"""The kubernetes backend as a `ComputeBackend`: KubeSpawner's settings and the Jobs executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from gpulab.spawner.backends.protocol import RunServices

if TYPE_CHECKING:  # typed settings (pydantic) only where a hub is configured
    from gpulab.hub_config.typed_settings import Settings


class KubernetesBackend:
    name = "kubernetes"
    spawner_class = "gpulab.spawner.backends.kubernetes.spawner.GpulabKubeSpawner"
    machine_local = False

    def configure(self, s: Settings, c: Config) -> None:
        kube = s.spawner.kubernetes
        if kube.namespace:
            c.KubeSpawner.namespace = kube.namespace
        if kube.hub_url:
            c.JupyterHub.hub_connect_url = kube.hub_url
            c.JupyterHub.hub_ip = "0.0.0.0"  # pods reach the hub from other machines
        c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
        c.KubeSpawner.image_pull_policy = kube.image_pull_policy
        c.KubeSpawner.uid = kube.uid
        c.KubeSpawner.fs_gid = kube.fs_gid
        c.KubeSpawner.common_labels = {"app.kubernetes.io/part-of": "gpulab"}
        if kube.service_account:
            c.KubeSpawner.service_account = kube.service_account
            c.KubeSpawner.automount_service_account_token = True
        storage = kube.home_storage
        if storage.capacity:
            c.KubeSpawner.storage_pvc_ensure = True
            c.KubeSpawner.storage_capacity = storage.capacity
            if storage.storage_class:
                c.KubeSpawner.storage_class = storage.storage_class
            c.KubeSpawner.pvc_name_template = "home-{user_server}"
            c.KubeSpawner.volumes = {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}}
            c.KubeSpawner.volume_mounts = {"home": {"name": "home", "mountPath": "/home/jovyan"}}

    def executor(self, services: RunServices):
        from .executor import KubernetesExecutor  # kubernetes_asyncio: loaded only on this backend

        return KubernetesExecutor(services.settings, services.log, services.roles_of, services.run_log,
                                  sessions=services.sessions)


BACKEND = KubernetesBackend()
