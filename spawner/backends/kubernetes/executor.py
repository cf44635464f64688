"""Runs as Kubernetes Jobs (spawner.backend: kubernetes), one per run, built by job_manifests.

The executor implements protocol.Executor; its plan is job_manifests.JobRequest and its
reference the Job's name. The cluster's scheduler allocates GPUs; quotas count the GPUs the
owner's pods hold in any namespace (a watch), and those of Jobs just created whose pod is
not there yet, so two runs started in one tick cannot both slip under a quota. A poll of
the scheduler's Jobs (by label, so a restarted scheduler finds the ones it started) keeps
their state, so `exit_code` answers from memory; `stop` and `cleanup` may be called from
other threads and hand their API calls to the event loop. A Job's pod log is copied into the
run's log.txt every few seconds while it runs (`gpulab logs -f` follows it), and once more when
it ended, before the dispatcher hears of it, as a local runner's output is: a runner that dies
before reporting (a broken image, a crash) still leaves its reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from kubernetes_asyncio.client.rest import ApiException
from kubespawner.clients import load_config, shared_client
from sqlalchemy.orm import sessionmaker

from gpulab.compute.claims import ClusterPool, Refused
from gpulab.compute.usage_report import spent_reader
from gpulab.spawner.cuda import version_tuple
from gpulab.spawner.backends.kubernetes.capacity import gang_shortfall, gpus_by_user, node_driver
from gpulab.spawner.backends.kubernetes.watch import ResourceWatch

from gpulab.spawner.backends.kubernetes.job_manifests import (
    COMPLETION_INDEX, COMPONENT_LABELS, RUN_LABEL, JobRequest, exit_code, job_name, rendezvous_service, run_job,
    run_secret, secret_name, service_name, split_credentials,
)
from gpulab.spawner.backends.kubernetes.job_overrides import apply_overrides
from gpulab.spawner.backends.protocol import RunRequest

if TYPE_CHECKING:
    from gpulab.extensions.scheduler.service_settings import SchedulerServiceSettings

POLL_SECONDS = 1.0
SELECTOR = ",".join(f"{k}={v}" for k, v in COMPONENT_LABELS.items())
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
LIVE_LOG_SECONDS = 2.0  # how often a running Job's output is copied into its log.txt
LOG_LIMIT_BYTES = 10 * 1024 * 1024  # a huge log keeps its first 10 MiB, not the scheduler's memory
PODS_FIRST_LOAD_SECONDS = 30


@dataclass(frozen=True)
class JobRef:
    """A run's Job; stored as its name."""

    name: str

    @classmethod
    def parse(cls, text: str) -> "JobRef":
        return cls(text)

    def __str__(self) -> str:
        return self.name


def job_plan(request: RunRequest, namespace: str, project_roles: dict) -> tuple[JobRequest, dict]:
    """The Job's request and the credentials for its Secret (pure). No CUDA_VISIBLE_DEVICES: the
    device plugin decides which GPUs a pod sees."""
    env, credentials = split_credentials(request.env)
    environment = request.environment
    return JobRequest(
        run_id=request.run_id, owner=request.owner, namespace=namespace, profile=request.profile,
        image=environment.image, environment_id=environment.id, cuda=environment.cuda,
        min_driver=environment.min_driver, env=env, timeout_seconds=request.timeout_seconds,
        project_roles=project_roles, secret_variables=tuple(credentials), nodes=request.nodes,
        project=request.claim.project if request.claim else "",
    ), credentials


def default_namespace() -> str:
    try:
        with open(NAMESPACE_FILE) as f:
            return f.read().strip()
    except OSError:
        return "default"


class KubernetesExecutor:
    homes_here = False  # homes are volumes in the cluster

    def __init__(self, settings: SchedulerServiceSettings, log, project_roles: Callable[[str], Awaitable[dict]],
                 log_path: Callable[[str], Path], on_exit=lambda: None, sessions: sessionmaker | None = None):
        self.kube = settings.spawner.kubernetes
        self.projects = settings.projects_kubernetes
        self.namespace = self.kube.namespace or default_namespace()
        self.log = log
        self.project_roles = project_roles
        self.log_path = log_path  # run id -> where its log.txt goes
        self.on_exit = on_exit
        self.codes: dict[str, int | None] = {}  # job name -> exit code (None: running)
        self.fresh: set[str] = set()  # started, not yet seen by a poll (which may have begun before)
        self.polled = False
        self.newest_driver: str | None = None  # among the nodes, from GPU Feature Discovery's labels
        self.loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task | None = None
        self.pods: ResourceWatch | None = None  # every pod in the cluster, for the GPUs each user holds
        self.unplaced: dict[str, tuple[str, int]] = {}  # run id -> (owner, GPUs) of a GPU Job with no pod seen yet
        # no availability check: a Job waits in the cluster's queue; budgets count the usage
        # ledger (gpulab's database, `sessions`), which the usage service fills from the pods
        self.pool = ClusterPool(self.held_by_owner, spent=spent_reader(sessions) if sessions is not None else None)
        self.log_copied: dict[str, float] = {}  # run id -> when its running pods' output was last copied
        self.log_done: set[str] = set()  # runs whose ended pods' output is their log.txt

    # ------------------------------------------------------------ protocol.Executor

    def parse_ref(self, text: str) -> JobRef:
        return JobRef.parse(text)

    def python_exists(self, python: str) -> bool:
        """Environments are images here; the nodes' drivers decide what can run (driver())."""
        return True

    async def admit(self, profile, nodes: int) -> str | None:
        """Gang admission of a multi-node GPU job: every pod must fit on the nodes' free GPUs now
        (k8s_capacity.gang_shortfall), else the run waits in gpulab's queue and no pod holds a GPU.
        A race with pods created meanwhile is left to the cluster's scheduler (no gang scheduler
        such as Kueue or Volcano is configured)."""
        if nodes <= 1 or not profile.uses_gpu:
            return None
        if self.pods is None or not self.pods.loaded.is_set():
            return "the cluster's pods are not known yet"
        return gang_shortfall(profile, nodes, await self._nodes(), list(self.pods.values()))

    async def start(self, request: RunRequest) -> JobRef:
        self._ensure_polling()
        job, credentials = job_plan(request, self.namespace, await self.project_roles(request.owner))
        products = await self._gpu_products() if request.profile.gpu.models else []
        core, batch = shared_client("CoreV1Api"), shared_client("BatchV1Api")
        await core.create_namespaced_secret(self.namespace, run_secret(request.run_id, self.namespace, credentials))
        try:
            if request.nodes > 1:  # the pods' DNS names, before any pod looks node 0 up
                await core.create_namespaced_service(self.namespace, rendezvous_service(request.run_id, self.namespace))
            await batch.create_namespaced_job(self.namespace, apply_overrides(
                run_job(job, self.kube, self.projects, products),
                [request.profile.kubespawner_override, *request.overrides]))
        except BaseException:
            await self._delete_secret(request.run_id)
            raise
        name = job_name(request.run_id)
        self.codes[name] = None
        self.fresh.add(name)
        if request.profile.uses_gpu:
            self.unplaced[request.run_id] = (request.owner, request.profile.gpu.count * request.nodes)
        return JobRef(name)

    def exit_code(self, ref: JobRef) -> int | None:
        """None while the Job runs (or before the first poll); -1 for a Job that is gone."""
        if ref.name in self.codes:
            return self.codes[ref.name]
        return -1 if self.polled else None

    def stop(self, run_id: str, ref: JobRef) -> None:
        """Delete the Job and its pod (called from a worker thread)."""
        if self.loop is None:
            raise RuntimeError("the Kubernetes executor has not started (prepare() was not awaited)")
        asyncio.run_coroutine_threadsafe(self._delete_job(ref.name), self.loop).result(30)

    def held_by_owner(self) -> dict[str, int]:
        """GPUs each user's pods hold (servers and runs, any namespace), with Jobs whose pod is not seen yet."""
        if self.pods is None or not self.pods.loaded.is_set():
            raise Refused("the cluster's pods are not known yet")
        pods = self.pods.values()
        held = gpus_by_user(pods)
        placed = {(p["metadata"].get("labels") or {}).get(RUN_LABEL) for p in pods}
        for run_id, (owner, gpus) in list(self.unplaced.items()):
            running = job_name(run_id) in self.codes and self.codes[job_name(run_id)] is None
            if run_id in placed or not running:  # its pod counts now, or the Job is over
                del self.unplaced[run_id]
            else:
                held[owner] = held.get(owner, 0) + gpus
        return held

    def picked_up(self, run_id: str) -> None:
        """Nothing to note: a Job's pod is never handed a run after it started."""

    def lost_before_start(self, run_id: str, ref: JobRef) -> bool:
        return False

    def cleanup(self, run_id: str, ref: JobRef | None = None, ended: str = "") -> None:
        if (loop := self.loop) is not None:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._delete_secret(run_id)))
            loop.call_soon_threadsafe(lambda: loop.create_task(self._delete_service(run_id)))

    # ------------------------------------------------------------ the API

    def _ensure_polling(self) -> None:
        if self._poller is None:
            self.loop = asyncio.get_running_loop()
            self._poller = self.loop.create_task(self._poll_forever())

    async def prepare(self) -> None:
        """Called once at start-up, so Jobs of runs started before a restart are found again."""
        load_config()
        self.pods = ResourceWatch(shared_client("CoreV1Api").list_pod_for_all_namespaces, "pods")
        self.pods.start()
        try:
            await asyncio.wait_for(self.pods.loaded.wait(), PODS_FIRST_LOAD_SECONDS)
        except asyncio.TimeoutError:  # GPU runs wait, with the reason, until the list arrives
            self.log.error("the cluster's pods were not listed within %ss; retrying", PODS_FIRST_LOAD_SECONDS)
        try:
            await self._poll()  # the nodes' drivers are known before the first request
        except Exception:
            self.log.exception("the first listing of the scheduler's Jobs failed; polling goes on")
        self._ensure_polling()

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("listing the scheduler's Jobs failed; trying again")
            await asyncio.sleep(POLL_SECONDS)

    async def _poll(self) -> None:
        jobs = await shared_client("BatchV1Api").list_namespaced_job(self.namespace, label_selector=SELECTOR,
                                                                     _preload_content=False)
        codes: dict[str, int | None] = {}
        for job in (await jobs.json())["items"]:
            if RUN_LABEL not in (job["metadata"].get("labels") or {}):
                continue
            name = job["metadata"]["name"]
            run_id = job["metadata"]["labels"][RUN_LABEL]
            status = job.get("status") or {}
            ended_now = bool(status.get("succeeded") or status.get("failed")) and self.codes.get(name) is None
            running = not (status.get("succeeded") or status.get("failed"))
            live = running and self._live_log_due(run_id)
            pods = await self._pods_of(run_id) if status.get("failed") or ended_now or live else []
            codes[name] = exit_code(job, pods)
            if ended_now and codes[name] is not None:
                await self._keep_log(run_id, pods)
            elif live:  # `gpulab logs -f` follows a Job's output as it comes, as a local runner's
                await self._keep_log(run_id, pods, final=False)
        drivers = [d for d in map(node_driver, await self._nodes()) if d]
        self.newest_driver = max(drivers, key=version_tuple, default=None)
        self.fresh -= codes.keys()
        codes.update({name: None for name in self.fresh})
        ended = any(code is not None and self.codes.get(name) is None for name, code in codes.items())
        self.codes, self.polled = codes, True
        if ended:
            self.on_exit()

    def driver(self) -> str | None:
        """The newest NVIDIA driver in the cluster: environments needing more cannot run anywhere."""
        return self.newest_driver

    async def _pods_of(self, run_id: str) -> list[dict]:
        listed = await shared_client("CoreV1Api").list_namespaced_pod(
            self.namespace, label_selector=f"{RUN_LABEL}={run_id}", _preload_content=False)
        return [p for p in (await listed.json())["items"] if (p["metadata"].get("labels") or {}).get(RUN_LABEL) == run_id]

    def _live_log_due(self, run_id: str) -> bool:
        now = asyncio.get_running_loop().time()
        if now - self.log_copied.get(run_id, float("-inf")) < LIVE_LOG_SECONDS:
            return False
        self.log_copied[run_id] = now
        return True

    async def _keep_log(self, run_id: str, pods: list[dict], final: bool = True) -> None:
        """The pods' output as the run's log.txt: while they run, every LIVE_LOG_SECONDS; when
        they ended, once (a scheduler restarted later keeps what is there)."""
        path = self.log_path(run_id)
        if not pods or (final and run_id in self.log_done):
            return
        if final:
            self.log_copied.pop(run_id, None)
            self.log_done.add(run_id)
        indexed = len(pods) > 1  # a multi-node job: every node's output, in rank order
        if indexed:
            pods = sorted(pods, key=lambda p: int((p["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, 0)))
        else:
            pods = pods[-1:]
        parts = []
        for pod in pods:
            try:
                text = await shared_client("CoreV1Api").read_namespaced_pod_log(
                    pod["metadata"]["name"], self.namespace, limit_bytes=LOG_LIMIT_BYTES)
            except ApiException as error:  # the node may be gone; the run still ends
                self.log.warning("could not read the log of run %s: %s", run_id, error.reason)
                continue
            if indexed:
                index = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, "?")
                text = f"==> node {index} ({pod['metadata']['name']}) <==\n{text}"
            parts.append(text)
        if not parts:
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")  # a reader never sees half a copy
        partial.write_text("\n".join(parts) if indexed else parts[0])
        partial.replace(path)

    async def _nodes(self) -> list[dict]:
        listed = await shared_client("CoreV1Api").list_node(_preload_content=False)
        return (await listed.json())["items"]

    async def _gpu_products(self) -> list[str]:
        labels = [(n["metadata"].get("labels") or {}) for n in await self._nodes()]
        return sorted({label["nvidia.com/gpu.product"] for label in labels if "nvidia.com/gpu.product" in label})

    async def _delete_job(self, name: str) -> None:
        try:
            await shared_client("BatchV1Api").delete_namespaced_job(name, self.namespace,
                                                                    propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise
        self.codes.pop(name, None)

    async def _delete_service(self, run_id: str) -> None:
        try:
            await shared_client("CoreV1Api").delete_namespaced_service(service_name(run_id), self.namespace)
        except ApiException as error:
            if error.status != 404:  # a single-node run has none
                self.log.warning("could not delete the Service of run %s: %s", run_id, error)

    async def _delete_secret(self, run_id: str) -> None:
        try:
            await shared_client("CoreV1Api").delete_namespaced_secret(secret_name(run_id), self.namespace)
        except ApiException as error:
            if error.status != 404:
                self.log.warning("could not delete the token Secret of run %s: %s", run_id, error)
