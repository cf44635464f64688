"""Project folders on Kubernetes: one ReadWriteMany volume, one sub-path per project (pure builders).

Every user pod mounts `<sub_path>/<slug>` of the shared claim at `<mount_path>/<slug>` for
each project its user belongs to, read-only for viewers. Membership comes from the user's
hub groups (membership.py), so a change applies at the user's next spawn: a running pod's
mounts are fixed when it starts. The Kubernetes spawner calls `with_project_volumes`
on the pod changes it built for a spawn (spawner/backends/kubernetes/manifests.py); the claim is either an
existing one (`claim_name`) or `claim_manifest` creates one from a storage class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

from ..membership import project_roles

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from gpulab.hub_config.typed_settings import ProjectsKubernetes

# `projects.kubernetes`, typed, or as the dict a caller still holds (typed here)
KubernetesSettings = Union["ProjectsKubernetes", Mapping[str, Any]]


def _typed(settings: KubernetesSettings) -> ProjectsKubernetes:
    from gpulab.hub_config.typed_settings import ProjectsKubernetes

    return ProjectsKubernetes.of(settings)

VOLUME_NAME = "gpulab-projects"
DEFAULT_CLAIM = "gpulab-projects"


def claim_name(settings: KubernetesSettings) -> str:
    """The claim every pod mounts: `projects.kubernetes.claim_name`, or the one gpulab creates."""
    return _typed(settings).claim_name or DEFAULT_CLAIM


def claim_manifest(given: KubernetesSettings, namespace: str) -> dict | None:
    """The ReadWriteMany claim to create when a storage class is set; None for an existing claim."""
    settings = _typed(given)
    if settings.claim_name or not settings.storage_class:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": DEFAULT_CLAIM, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "gpulab", "gpulab.dev/component": "projects"}},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": settings.storage_class,
            "resources": {"requests": {"storage": settings.size}},
        },
    }


def project_volumes(roles: dict[str, str], given: KubernetesSettings) -> tuple[list[dict], list[dict]]:
    """(volumes, volumeMounts) for a user with these project roles ({} -> nothing mounted)."""
    if not roles:
        return [], []
    settings = _typed(given)
    volume = {"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim_name(settings)}}
    sub_path = settings.sub_path.strip("/")
    mount_path = settings.mount_path.rstrip("/")
    mounts = [
        {
            "name": VOLUME_NAME,
            "mountPath": f"{mount_path}/{slug}",
            "subPath": f"{sub_path}/{slug}" if sub_path else slug,
            "readOnly": role == "viewer",
        }
        for slug, role in sorted(roles.items())
    ]
    return [volume], mounts


def with_project_volumes(changes, groups: list[str], settings: KubernetesSettings):
    """The spawner's hook: `changes` (spawner.manifests.PodChanges) plus the user's project mounts."""
    volumes, mounts = project_volumes(project_roles(groups), settings)
    return dataclasses.replace(changes, volumes=list(changes.volumes) + volumes,
                               volume_mounts=list(changes.volume_mounts) + mounts)
