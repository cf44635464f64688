"""GPU capacity of a cluster (pure): node allocatable minus the requests of the pods on it.

The inputs are the node and pod objects (dicts) a watch keeps current; nothing here
talks to the API server.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpulab.compute.availability import Availability
from gpulab.compute.profiles import Profile

from gpulab.spawner.backends.kubernetes.manifests import DRIVER_MAJOR_LABEL, DRIVER_MINOR_LABEL, DRIVER_REV_LABEL, PRODUCT_LABEL, gpu_resource

USER_LABEL = "hub.jupyter.org/username"  # on a server's pod (KubeSpawner's; a slug of the name)
USER_ANNOTATION = "hub.jupyter.org/username"  # on a server's pod (KubeSpawner's; the name itself)
OWNER_ANNOTATION = "gpulab.dev/owner"  # on a scheduled run's pod
FINISHED = ("Succeeded", "Failed")


def quantity(value) -> int:
    """Whole units of an extended resource ("4" -> 4)."""
    return int(float(str(value))) if value not in (None, "") else 0


def schedulable(node: dict) -> bool:
    if node.get("spec", {}).get("unschedulable"):
        return False
    conditions = node.get("status", {}).get("conditions")
    if conditions is None:
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_driver(node: dict) -> str | None:
    labels = node.get("metadata", {}).get("labels", {})
    if DRIVER_MAJOR_LABEL not in labels:
        return None
    parts = [labels[DRIVER_MAJOR_LABEL], labels.get(DRIVER_MINOR_LABEL, "0")]
    if labels.get(DRIVER_REV_LABEL):
        parts.append(labels[DRIVER_REV_LABEL])
    return ".".join(parts)


def pod_requests(pod: dict, resource: str) -> int:
    total = 0
    for container in pod.get("spec", {}).get("containers", []):
        res = container.get("resources") or {}
        total += quantity((res.get("requests") or {}).get(resource) or (res.get("limits") or {}).get(resource))
    return total


def active(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") not in FINISHED


@dataclass(frozen=True)
class NodeGpus:
    name: str
    product: str
    driver: str | None
    allocatable: int
    used: int

    @property
    def free(self) -> int:
        return max(0, self.allocatable - self.used)


def candidate_nodes(profile: Profile, nodes: list[dict], pods: list[dict]) -> list[NodeGpus]:
    """Nodes the profile may land on, with their GPUs of the profile's kind."""
    resource = gpu_resource(profile)
    if resource is None:
        return []
    used_by_node: dict[str, int] = {}
    for pod in pods:
        node_name = pod.get("spec", {}).get("nodeName")
        if node_name and active(pod):
            used_by_node[node_name] = used_by_node.get(node_name, 0) + pod_requests(pod, resource)
    wanted = [m.lower() for m in profile.gpu.models]
    selector = dict(profile.node_selector)
    found = []
    for node in nodes:
        labels = node.get("metadata", {}).get("labels", {})
        product = labels.get(PRODUCT_LABEL, "")
        allocatable = quantity(node.get("status", {}).get("allocatable", {}).get(resource))
        if not allocatable or not schedulable(node):
            continue
        if wanted and not any(m in product.lower() for m in wanted):
            continue
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        name = node["metadata"]["name"]
        found.append(NodeGpus(name, product, node_driver(node), allocatable, used_by_node.get(name, 0)))
    return found


def cluster_availability(profile: Profile, nodes: list[dict], pods: list[dict]) -> Availability | None:
    """Free GPUs of the profile's kind; enough only if one node has `count` free (a pod is on one node)."""
    if not profile.uses_gpu:
        return None
    candidates = candidate_nodes(profile, nodes, pods)
    free = sum(n.free for n in candidates)
    total = sum(n.allocatable for n in candidates)
    if profile.gpu.mig_profile:
        kind = f"MIG {profile.gpu.mig_profile} slices"
    else:
        products = sorted({n.product for n in candidates if n.product})
        kind = products[0] if len(products) == 1 else "GPUs"
    if not candidates:
        return Availability(0, 0, f"no nodes with {kind if profile.gpu.mig_profile else 'matching GPUs'} in the cluster",
                            False)
    largest = max(n.free for n in candidates)
    label = f"{free} of {total} {kind} free"
    if free >= profile.gpu.count > largest:
        label += f" (at most {largest} on one node)"
    return Availability(free, total, label, largest >= profile.gpu.count)


def gang_shortfall(profile: Profile, pods_wanted: int, nodes: list[dict], pods: list[dict]) -> str | None:
    """Why `pods_wanted` pods of the profile cannot all be placed now (None: they can), counting
    how many fit on each node's free GPUs. The cluster's scheduler still places them; this keeps a
    multi-node job from holding some of its GPUs while the rest wait."""
    candidates = candidate_nodes(profile, nodes, pods)
    fits = sum(node.free // profile.gpu.count for node in candidates)
    if fits >= pods_wanted:
        return None
    per_node = ", ".join(f"{n.name} {n.free}" for n in candidates) or "no node of the profile's kind"
    return (f"all {pods_wanted} pods at once need {profile.gpu.count} free GPU(s) each; the cluster has room "
            f"for {fits} now (free by node: {per_node})")


def pod_owner(pod: dict) -> str | None:
    """The hub user a server's or a scheduled run's pod belongs to. A server's annotation holds
    the name as the hub knows it; its label only a slug of it (which differs for "Ann@x.org")."""
    meta = pod.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return (annotations.get(USER_ANNOTATION) or (meta.get("labels") or {}).get(USER_LABEL)
            or annotations.get(OWNER_ANNOTATION))


def pod_gpus(pod: dict) -> int:
    """GPUs (whole and MIG instances) a pod's containers are given: their `nvidia.com/*` limits."""
    total = 0
    for container in pod.get("spec", {}).get("containers", []):
        limits = (container.get("resources") or {}).get("limits") or {}
        total += sum(quantity(v) for k, v in limits.items() if k.startswith("nvidia.com/"))
    return total


def gpus_by_user(pods: list[dict]) -> dict[str, int]:
    """GPUs (whole and MIG) held by each hub user's active pods, servers and runs alike."""
    held: dict[str, int] = {}
    for pod in pods:
        user = pod_owner(pod)
        if user and active(pod):
            held[user] = held.get(user, 0) + pod_gpus(pod)
    return held


def best_driver(profile: Profile, nodes: list[dict], pods: list[dict]) -> str | None:
    """The newest driver among the nodes the profile may use (an environment needs one node to run)."""
    drivers = [n.driver for n in candidate_nodes(profile, nodes, pods) if n.driver]
    return max(drivers, key=lambda d: tuple(int(p) for p in d.split(".")), default=None)
