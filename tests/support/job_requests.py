"""Kubernetes job requests the unit tests build: profiles' requests with their fields, and the
chart's Kubernetes and projects settings."""

from __future__ import annotations

from gpulab.spawner.backends.kubernetes.job_manifests import JobRequest
from tests.support.gpu_profiles import CPU, GPU2, MIG, profiles


CPU_P, GPU2_P, MIG_P = profiles(CPU, GPU2, MIG)
KUBE = {"uid": 1000, "fs_gid": 100, "image_pull_policy": "IfNotPresent", "home_storage": {"capacity": "10Gi"}}
PROJECTS = {"claim_name": "", "storage_class": "nfs", "size": "100Gi", "sub_path": "projects",
            "mount_path": "/home/jovyan/projects"}


def request(profile, **fields) -> JobRequest:
    return JobRequest(**{"run_id": "r1", "owner": "alice", "namespace": "ml", "profile": profile,
                         "image": "ghcr.io/gpulab/pytorch:cuda12-pytorch-2.15", "environment_id": "pytorch-cuda12",
                         "cuda": "12.6", "min_driver": "560.28.03", "env": {"GPULAB_RUN_URL": "http://hub/run/r1/"},
                         "timeout_seconds": 600, "project_roles": {}, **fields})
