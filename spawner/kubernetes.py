"""The Kubernetes backend: KubeSpawner, with gpulab's profiles applied to each pod.

The cluster's scheduler and the NVIDIA device plugin allocate GPUs; gpulab adds what the
profile asks for to the pod KubeSpawner builds, and refuses a spawn with a clear reason
when no node has the GPUs free (instead of leaving a pod Pending until the start times
out). Availability comes from a watch on nodes and pods, not a listing per page load.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kubespawner import KubeSpawner
from kubespawner.clients import shared_client

from gpulab.compute.availability import Availability
from gpulab.compute.claims import ClusterPool, Pool
from gpulab.compute.profiles import Profile

from .k8s_capacity import best_driver, cluster_availability, gpus_by_user
from .k8s_watch import ResourceWatch
from .manifests import PRODUCT_LABEL, apply_changes, pod_changes
from .profile_spawner import GpuSnapshot, ProfileSpawnerMixin, SpawnPlan
from .progress import ProgressMixin

FIRST_LOAD_SECONDS = 30


@dataclass(frozen=True)
class ClusterSnapshot(GpuSnapshot):
    nodes: tuple = ()
    pods: tuple = ()

    def availability(self, profile: Profile) -> Availability | None:
        return cluster_availability(profile, list(self.nodes), list(self.pods))


class ClusterWatch:
    """Nodes and every pod in the cluster (GPUs are used by pods in any namespace)."""

    def __init__(self):
        api = shared_client("CoreV1Api")
        self.nodes = ResourceWatch(api.list_node, "nodes")
        self.pods = ResourceWatch(api.list_pod_for_all_namespaces, "pods")

    async def ready(self) -> "ClusterWatch":
        for resource in (self.nodes, self.pods):
            resource.start()
        await asyncio.wait_for(asyncio.gather(self.nodes.loaded.wait(), self.pods.loaded.wait()), FIRST_LOAD_SECONDS)
        return self

    def snapshot(self) -> ClusterSnapshot:
        nodes, pods = tuple(self.nodes.values()), tuple(self.pods.values())
        return ClusterSnapshot([], set(), gpus_by_user(list(pods)), nodes, pods)


_cluster: ClusterWatch | None = None


class GpulabKubeSpawner(ProfileSpawnerMixin, ProgressMixin, KubeSpawner):
    """Profiles on Kubernetes: `nvidia.com/gpu` or `nvidia.com/mig-*` limits, GPU-node affinity, /dev/shm."""

    async def cluster(self) -> ClusterWatch:
        global _cluster
        if _cluster is None:
            _cluster = ClusterWatch()
        return await _cluster.ready()

    async def gpu_snapshot(self) -> GpuSnapshot:
        return (await self.cluster()).snapshot()

    def gpu_devices(self):
        return []

    def gpu_driver(self, profile: Profile) -> str | None:
        if _cluster is None or not profile.uses_gpu:
            return None
        snapshot = _cluster.snapshot()
        return best_driver(profile, list(snapshot.nodes), list(snapshot.pods))

    async def start(self):
        await self.cluster()  # profiles and drivers are judged against the live cluster
        return await super().start()

    async def load_user_options(self):
        """gpulab resolves `profile` and `environment` itself (plan_spawn); KubeSpawner's
        profile_list handling would reject them and, worse, write overrides onto the spawner."""

    async def gpu_pool(self) -> Pool:
        """No ledger here: the cluster's scheduler allocates. Quotas count what pods hold, and a
        spawn no node can take is refused now instead of left Pending."""
        snapshot = (await self.cluster()).snapshot()
        return ClusterPool(lambda: snapshot.held_by_owner, snapshot.availability)

    def _expand_env(self, env):
        """No "{username}" templating of environment values: gpulab's are literal, some are JSON
        (whose braces KubeSpawner would read as template fields). JupyterHub's get_env has
        already put them, callables evaluated, into the pod's environment."""
        return {}

    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        plan: SpawnPlan = self._plan
        nodes = (await self.cluster()).snapshot().nodes
        products = sorted({n["metadata"].get("labels", {}).get(PRODUCT_LABEL) for n in nodes} - {None})
        env = plan.environment
        return apply_changes(pod, pod_changes(plan.profile, env.image, env.id, env.cuda, env.min_driver, products))

    async def progress(self):
        for event in list(getattr(self, "_progress_events", [])):
            yield event
        async for event in KubeSpawner.progress(self):
            yield event
