"""Runs as Kubernetes Jobs (spawner.backend: kubernetes), one per run, built by job_manifests.

The executor keeps the dispatcher's interface (start, exit_code, stop, cleanup). A poll of
the scheduler's Jobs (by label, so a restarted scheduler finds the ones it started) keeps
their state, so `exit_code` answers from memory; `stop` and `cleanup` may be called from
other threads and hand their API calls to the event loop. When a Job ends, its pod's log
becomes the run's log.txt before the dispatcher hears of it, as a local runner's output does:
a runner that dies before reporting (a broken image, a crash) still leaves its reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Awaitable, Callable

from kubernetes_asyncio.client.rest import ApiException
from kubespawner.clients import load_config, shared_client

from gpulab.spawner.cuda import version_tuple
from gpulab.spawner.k8s_capacity import node_driver

from .job_manifests import (
    COMPONENT_LABELS, RUN_LABEL, JobRequest, exit_code, job_name, run_job, run_secret, secret_name, split_credentials,
)
from .local import Launch

POLL_SECONDS = 1.0
SELECTOR = ",".join(f"{k}={v}" for k, v in COMPONENT_LABELS.items())
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
LOG_LIMIT_BYTES = 10 * 1024 * 1024  # a huge log keeps its first 10 MiB, not the scheduler's memory


def default_namespace() -> str:
    try:
        with open(NAMESPACE_FILE) as f:
            return f.read().strip()
    except OSError:
        return "default"


class KubernetesExecutor:
    def __init__(self, settings: dict, log, project_roles: Callable[[str], Awaitable[dict]],
                 log_path: Callable[[str], Path], on_exit=lambda: None):
        self.kube = settings["spawner"]["kubernetes"]
        self.projects = settings["projects_kubernetes"]
        self.namespace = self.kube["namespace"] or default_namespace()
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

    # ------------------------------------------------------------ the dispatcher's interface

    async def start(self, launch: Launch) -> str:
        self._ensure_polling()
        # The device plugin decides which GPUs a pod sees.
        env, credentials = split_credentials({k: v for k, v in launch.env.items() if k != "CUDA_VISIBLE_DEVICES"})
        request = JobRequest(
            run_id=launch.run_id, owner=launch.owner, namespace=self.namespace, profile=launch.profile,
            image=launch.environment.image, environment_id=launch.environment.id, cuda=launch.environment.cuda,
            min_driver=launch.environment.min_driver, env=env, timeout_seconds=launch.timeout_seconds,
            project_roles=await self.project_roles(launch.owner), secret_variables=tuple(credentials),
        )
        products = await self._gpu_products() if launch.profile.gpu.models else []
        core, batch = shared_client("CoreV1Api"), shared_client("BatchV1Api")
        await core.create_namespaced_secret(self.namespace, run_secret(launch.run_id, self.namespace, credentials))
        try:
            await batch.create_namespaced_job(self.namespace, run_job(request, self.kube, self.projects, products))
        except BaseException:
            await self._delete_secret(launch.run_id)
            raise
        name = job_name(launch.run_id)
        self.codes[name] = None
        self.fresh.add(name)
        return name

    def exit_code(self, ref: str) -> int | None:
        """None while the Job runs (or before the first poll); -1 for a Job that is gone."""
        if ref in self.codes:
            return self.codes[ref]
        return -1 if self.polled else None

    def stop(self, ref: str) -> None:
        """Delete the Job and its pod (called from a worker thread)."""
        asyncio.run_coroutine_threadsafe(self._delete_job(ref), self.loop).result(30)

    def cleanup(self, run_id: str) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._delete_secret(run_id)))

    # ------------------------------------------------------------ the API

    def _ensure_polling(self) -> None:
        if self._poller is None:
            self.loop = asyncio.get_running_loop()
            self._poller = self.loop.create_task(self._poll_forever())

    async def start_polling(self) -> None:
        """Called once at start-up, so Jobs of runs started before a restart are found again."""
        load_config()
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
            pods = await self._pods_of(run_id) if status.get("failed") or ended_now else []
            codes[name] = exit_code(job, pods)
            if ended_now and codes[name] is not None:
                await self._keep_log(run_id, pods)
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

    async def _keep_log(self, run_id: str, pods: list[dict]) -> None:
        """The ended pod's output as the run's log.txt (once: a restarted scheduler keeps what is there)."""
        path = self.log_path(run_id)
        if path.exists() or not pods:
            return
        try:
            text = await shared_client("CoreV1Api").read_namespaced_pod_log(
                pods[-1]["metadata"]["name"], self.namespace, limit_bytes=LOG_LIMIT_BYTES)
        except ApiException as error:  # the node may be gone; the run still ends
            self.log.warning("could not read the log of run %s: %s", run_id, error.reason)
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(text)

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

    async def _delete_secret(self, run_id: str) -> None:
        try:
            await shared_client("CoreV1Api").delete_namespaced_secret(secret_name(run_id), self.namespace)
        except ApiException as error:
            if error.status != 404:
                self.log.warning("could not delete the token Secret of run %s: %s", run_id, error)
