"""The Kubernetes backend: KubeSpawner, with gpulab's profiles applied to each pod.

The cluster's scheduler and the NVIDIA device plugin allocate GPUs; gpulab merges what the
profile asks for into the KubeSpawner settings the operator configured (manifests.py) and
lets KubeSpawner build the pod, and refuses a spawn with a clear reason when no node has the
GPUs free (instead of leaving a pod Pending until the start times out). Availability comes
from a watch on nodes and pods, not a listing per page load.

Each spawn puts the configured values back before it applies its own, so nothing of one
spawn's profile reaches the next (kubespawner#546, #691).
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass

from kubespawner import KubeSpawner
from kubespawner.clients import shared_client
from traitlets import List, Unicode

from gpulab.compute.availability import Availability
from gpulab.compute.claims import ClusterPool, Pool
from gpulab.compute.profiles import Profile
from gpulab.compute.usage_report import spent_reader

from gpulab.spawner.hub_shared import shared_value, shared_values
from gpulab.spawner.backends.kubernetes.capacity import best_driver, cluster_availability, gpus_by_user
from gpulab.spawner.backends.kubernetes.watch import ResourceWatch
from gpulab.spawner.backends.kubernetes.manifests import MERGED_SETTINGS, PRODUCT_LABEL, pod_changes, profile_settings
from gpulab.spawner.profile_spawner import GpuSnapshot, ProfileSpawnerMixin, SpawnPlan
from gpulab.spawner.progress import ProgressMixin

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


CLUSTER_KEY = ("cluster",)  # the hub's one watch of nodes and pods (hub_shared)


class GpulabKubeSpawner(ProfileSpawnerMixin, ProgressMixin, KubeSpawner):
    """Profiles on Kubernetes: `nvidia.com/gpu` or `nvidia.com/mig-*` limits, GPU-node affinity, /dev/shm."""

    literal_environment = List(
        Unicode(),
        help="""Names of the environment variables gpulab and its extensions set, passed to the pod as
        they are; every other variable of `environment` is expanded as KubeSpawner does ("{username}",
        "{servername}", ...). Set by apply_config. Default []. Example ["GPULAB_URL"].""",
    ).tag(config=True)

    async def cluster(self) -> ClusterWatch:
        return await shared_value(self, CLUSTER_KEY, ClusterWatch).ready()

    async def gpu_snapshot(self) -> GpuSnapshot:
        return (await self.cluster()).snapshot()

    def gpu_devices(self):
        return []

    def gpu_driver(self, profile: Profile) -> str | None:
        watch = shared_values(self).get(CLUSTER_KEY)
        if watch is None or not profile.uses_gpu:
            return None
        snapshot = watch.snapshot()
        return best_driver(profile, list(snapshot.nodes), list(snapshot.pods))

    async def start(self):
        await self.cluster()  # profiles and drivers are judged against the live cluster
        return await super().start()

    async def load_user_options(self):
        """Apply this spawn's plan (resolved and claimed in admit): the profile merged into the
        configured settings, then the overrides it carries, KubeSpawner's way. KubeSpawner's own
        profile_list handling is not used: gpulab resolves `profile` and its options itself."""
        self._restore_configured()
        plan: SpawnPlan = self.spawn_plan
        nodes = (await self.cluster()).snapshot().nodes
        products = sorted({n["metadata"].get("labels", {}).get(PRODUCT_LABEL) for n in nodes} - {None})
        env = plan.environment
        changes = pod_changes(plan.profile, env.image, env.id, env.cuda, env.min_driver, products, plan.project)
        configured = {name: getattr(self, name) for name in MERGED_SETTINGS}
        self._override(profile_settings(configured, changes, plan.profile))
        for overrides in plan.kubespawner_overrides:
            self._override(overrides)
        if not plan.profile.uses_gpu and any(r.startswith("nvidia.com/") for r in self.extra_resource_limits):
            # GPUs asked for z2jh's way (kubespawner_override): the pod must see them.
            if self.environment.get("NVIDIA_VISIBLE_DEVICES") == "void":
                self._override({"environment": {"NVIDIA_VISIBLE_DEVICES": None}})

    def _override(self, overrides: dict) -> None:
        """KubeSpawner's override semantics (dicts merged recursively, a None value removes a key,
        anything else replaced), remembering each setting's configured value first."""
        self._configured = getattr(self, "_configured", {})
        for name in overrides:
            self._configured.setdefault(name, copy.deepcopy(getattr(self, name)))
        self._apply_overrides(copy.deepcopy(overrides))

    def _restore_configured(self) -> None:
        for name, value in getattr(self, "_configured", {}).items():
            setattr(self, name, copy.deepcopy(value))

    async def gpu_pool(self) -> Pool:
        """No GPU ledger here: the cluster's scheduler allocates. Quotas count what pods hold, a
        spawn no node can take is refused now instead of left Pending, and budgets count the
        GPU-hours the usage service recorded from the cluster's pods."""
        snapshot = (await self.cluster()).snapshot()
        return ClusterPool(lambda: snapshot.held_by_owner, snapshot.availability,
                           spent=spent_reader(self.ledger.sessions) if self.ledger is not None else None)

    def _expand_env(self, env):
        """KubeSpawner's "{username}"/"{servername}" expansion, except for gpulab's own variables:
        they are literal, and some hold JSON whose braces are not templates."""
        return super()._expand_env({k: v for k, v in env.items() if k not in self.literal_environment})

    async def progress(self):
        for event in list(getattr(self, "_progress_events", [])):
            yield event
        async for event in KubeSpawner.progress(self):
            yield event
