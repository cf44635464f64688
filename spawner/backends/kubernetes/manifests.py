"""What a profile changes in a user pod on Kubernetes (pure builders, tested against literal dicts).

`pod_changes(plan)` says what this spawn's profile and environment add to a pod;
`profile_settings(configured, changes)` merges that into the KubeSpawner settings the operator
configured (resources, tolerations, affinity, volumes, environment and labels are added to,
never replaced), and KubeSpawner builds the pod from the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpulab.compute.profiles import Profile

from gpulab.spawner.cuda import minimum_driver, version_tuple

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
DRIVER_MAJOR_LABEL = "nvidia.com/cuda.driver.major"
DRIVER_MINOR_LABEL = "nvidia.com/cuda.driver.minor"
DRIVER_REV_LABEL = "nvidia.com/cuda.driver.rev"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_resource(profile: Profile) -> str | None:
    """The extended resource the device plugin offers for this profile's GPUs."""
    if not profile.uses_gpu:
        return None
    return f"nvidia.com/mig-{profile.gpu.mig_profile}" if profile.gpu.mig_profile else GPU_RESOURCE


def cpu_quantity(cores: float) -> str:
    return f"{cores:g}" if cores == int(cores) else f"{int(round(cores * 1000))}m"


def resources(profile: Profile) -> dict:
    """Container resources; GPUs go in both requests and limits, as extended resources require."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if profile.cpu_limit:
        limits["cpu"] = cpu_quantity(profile.cpu_limit)
    if profile.cpu_guarantee:
        requests["cpu"] = cpu_quantity(profile.cpu_guarantee)
    if profile.memory_limit:
        limits["memory"] = str(profile.memory_limit)
    if profile.memory_guarantee:
        requests["memory"] = str(profile.memory_guarantee)
    resource = gpu_resource(profile)
    if resource:
        limits[resource] = requests[resource] = str(profile.gpu.count)
    return {"limits": limits, "requests": requests}


def matching_products(profile: Profile, products: list[str]) -> list[str]:
    """The GPU Feature Discovery product labels (e.g. "NVIDIA-A100-SXM4-80GB") the profile accepts."""
    if not profile.gpu.models:
        return sorted(products)
    wanted = [m.lower() for m in profile.gpu.models]
    return sorted(p for p in products if any(m in p.lower() for m in wanted))


def driver_terms(min_driver: str | None) -> list[list[dict]]:
    """Node-selector terms (ORed) for nodes whose CUDA driver is at least `min_driver`.

    Labels hold integers, and `Gt` compares integers: major > M, or major == M and minor >= m.
    """
    if not min_driver:
        return [[]]
    major, minor = version_tuple(min_driver)[:2]
    return [
        [{"key": DRIVER_MAJOR_LABEL, "operator": "Gt", "values": [str(major)]}],
        [{"key": DRIVER_MAJOR_LABEL, "operator": "In", "values": [str(major)]},
         {"key": DRIVER_MINOR_LABEL, "operator": "Gt", "values": [str(minor - 1)]}],
    ]


def node_affinity(profile: Profile, products: list[str], cuda: str | None, min_driver: str | None) -> dict | None:
    """Required node affinity: one of the accepted GPU products, with a driver new enough."""
    if not profile.uses_gpu:
        return None
    product_match = ([{"key": PRODUCT_LABEL, "operator": "In", "values": matching_products(profile, products)}]
                     if profile.gpu.models else [])
    required_driver = min_driver or (minimum_driver(cuda) if cuda else None)
    terms = [product_match + driver for driver in driver_terms(required_driver)]
    if terms == [[]]:
        return None
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": term} for term in terms]}}}


def shared_memory(profile: Profile) -> tuple[dict, dict] | None:
    """A memory-backed /dev/shm for GPU profiles (PyTorch data loaders need more than 64 MB)."""
    if not profile.uses_gpu:
        return None
    empty_dir = {"medium": "Memory"}
    if profile.memory_limit:
        empty_dir["sizeLimit"] = str(profile.memory_limit)
    return {"name": "dshm", "emptyDir": empty_dir}, {"name": "dshm", "mountPath": "/dev/shm"}


def visibility_env(profile: Profile) -> dict[str, str]:
    """CPU pods must not see GPUs even if their image sets NVIDIA_VISIBLE_DEVICES=all."""
    return {} if profile.uses_gpu else {"NVIDIA_VISIBLE_DEVICES": "void"}


@dataclass(frozen=True)
class PodChanges:
    image: str
    resources: dict
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)
    affinity: dict | None = None
    volumes: list = field(default_factory=list)
    volume_mounts: list = field(default_factory=list)
    env: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)


PROJECT_LABEL = "gpulab.dev/project"  # a server pod's project, so the cluster's usage counts it there


def pod_changes(profile: Profile, image: str, environment_id: str, cuda: str | None, min_driver: str | None,
                products: list[str], project: str = "") -> PodChanges:
    shm = shared_memory(profile)
    return PodChanges(
        image=image,
        resources=resources(profile),
        node_selector=dict(profile.node_selector),
        tolerations=([GPU_TOLERATION] if profile.uses_gpu else []) + list(profile.tolerations),
        affinity=node_affinity(profile, products, cuda, min_driver),
        volumes=[shm[0]] if shm else [],
        volume_mounts=[shm[1]] if shm else [],
        env=visibility_env(profile),
        labels={"gpulab.dev/profile": profile.id, "gpulab.dev/environment": environment_id,
                **({PROJECT_LABEL: project} if project else {})},
    )


def _listed(value) -> list:
    """A KubeSpawner list-or-dict setting as the list KubeSpawner puts in the pod (dicts by sorted key)."""
    if isinstance(value, dict):
        return [value[key] for key in sorted(value)]
    return list(value or [])


def _added(configured, name: str, item: dict):
    """`item` added to a list-or-dict KubeSpawner setting, keeping its form."""
    if isinstance(configured, dict):
        return {**configured, name: item}
    return list(configured or []) + [item]


def required_terms(configured: list, added: list) -> list:
    """Node-selector terms for both: terms are ORed and expressions in a term ANDed, so each
    configured term is combined with each added one."""
    if not configured or not added:
        return list(configured) + list(added)
    return [{**mine, "matchExpressions": list(mine.get("matchExpressions", [])) + list(extra.get("matchExpressions", []))}
            for mine in configured for extra in added]


def profile_settings(configured: dict, changes: PodChanges, profile: Profile) -> dict:
    """KubeSpawner settings for this spawn: `changes` merged into the `configured` ones.

    `configured` holds the current values of the settings named in MERGED_SETTINGS. A
    profile's CPU and memory replace the configured ones only where it sets them; GPUs join
    `extra_resource_limits`/`extra_resource_guarantees`; tolerations, volumes, environment,
    node selector and labels are added to; required node affinity is ANDed with the operator's,
    and preferred node affinity and pod (anti-)affinity are left as configured.
    """
    settings: dict[str, Any] = {"image": changes.image}
    for trait, value in (("cpu_limit", profile.cpu_limit), ("cpu_guarantee", profile.cpu_guarantee),
                         ("mem_limit", profile.memory_limit), ("mem_guarantee", profile.memory_guarantee)):
        if value is not None:
            settings[trait] = value
    resource = gpu_resource(profile)
    if resource:
        count = str(profile.gpu.count)
        settings["extra_resource_limits"] = {**configured["extra_resource_limits"], resource: count}
        settings["extra_resource_guarantees"] = {**configured["extra_resource_guarantees"], resource: count}
    settings["node_selector"] = {**configured["node_selector"], **changes.node_selector}
    tolerations = _listed(configured["tolerations"])
    settings["tolerations"] = tolerations + [t for t in changes.tolerations if t not in tolerations]
    if changes.affinity:
        added = changes.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        settings["node_affinity_required"] = required_terms(_listed(configured["node_affinity_required"]), added)
    volumes, mounts = configured["volumes"], configured["volume_mounts"]
    taken = {v.get("name") for v in _listed(volumes)}
    mounted = {m.get("mountPath") for m in _listed(mounts)}
    for volume, mount in zip(changes.volumes, changes.volume_mounts):
        # An operator who already gives the pod a volume of that name or a mount there keeps theirs.
        if volume["name"] not in taken and mount["mountPath"] not in mounted:
            volumes, mounts = _added(volumes, volume["name"], volume), _added(mounts, mount["name"], mount)
    settings["volumes"], settings["volume_mounts"] = volumes, mounts
    settings["environment"] = {**configured["environment"], **changes.env}
    settings["extra_labels"] = {**configured["extra_labels"], **changes.labels}
    return settings


MERGED_SETTINGS = ("extra_resource_limits", "extra_resource_guarantees", "node_selector", "tolerations",
                   "node_affinity_required", "volumes", "volume_mounts", "environment", "extra_labels")
