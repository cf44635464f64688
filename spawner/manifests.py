"""What a profile changes in a user pod on Kubernetes (pure builders, tested against literal dicts).

KubeSpawner builds the pod from its configuration; `pod_changes(plan)` says what this
spawn's profile and environment change in it, and `apply_changes` writes that onto the
pod object KubeSpawner built, never onto KubeSpawner's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpulab.compute.profiles import Profile

from .cuda import minimum_driver, version_tuple

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


def pod_changes(profile: Profile, image: str, environment_id: str, cuda: str | None, min_driver: str | None,
                products: list[str]) -> PodChanges:
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
        labels={"gpulab.dev/profile": profile.id, "gpulab.dev/environment": environment_id},
    )


def apply_changes(pod, changes: PodChanges):
    """Write `changes` onto the V1Pod KubeSpawner built (the one place a pod object is modified)."""
    from kubernetes_asyncio.client import V1EnvVar

    container = pod.spec.containers[0]
    container.image = changes.image
    container.resources = changes.resources
    container.env = [e for e in (container.env or []) if e.name not in changes.env]
    container.env += [V1EnvVar(name=k, value=v) for k, v in changes.env.items()]
    container.volume_mounts = list(container.volume_mounts or []) + changes.volume_mounts
    pod.spec.volumes = list(pod.spec.volumes or []) + changes.volumes
    pod.spec.node_selector = {**(pod.spec.node_selector or {}), **changes.node_selector} or None
    pod.spec.tolerations = list(pod.spec.tolerations or []) + changes.tolerations or None
    if changes.affinity:
        pod.spec.affinity = changes.affinity
    pod.metadata.labels = {**(pod.metadata.labels or {}), **changes.labels}
    return pod
