"""An emulated Kubernetes cluster for tests: kmock's API server and a small test "kubelet".

Run as `python -m tests.k8s.fake_cluster --state FILE --nodes FILE --workdir DIR`; it writes
{"url": ...} to FILE once the API answers, and runs until SIGTERM.

The kubelet watches pods. For each new pod it places it on the first node
with enough free GPUs of the kind it asks for (leaving it Pending otherwise), runs the
container's command as a local process on its own loopback address (127.x.y.z) (a pod's 0.0.0.0 is
its own IP, so the server's bind address is rewritten to it), and marks the pod Running
once the process listens (a server), or Succeeded/Failed with its exit code when the
process ends (a Job's pod). Deleting the pod stops the process. A small Job controller makes
each Job's pod (an Indexed Job's pods, one per completion index, with the index's annotation,
hostname and JOB_COMPLETION_INDEX) and reports the pods' end on the Job. A pod's log is its
process's output. Variables from the downward API (`fieldRef` to an annotation) are resolved.

What this is not: a scheduler (no affinity, taints or CPU/memory fitting), a container
runtime (no images, no user namespaces: processes run from this Python environment as
this user), or the NVIDIA device plugin (GPU capacity is what the node objects declare).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import subprocess
import sys
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import kmock
from aiohttp import web

from gpulab.spawner.backends.kubernetes.capacity import pod_requests, quantity


async def follow(session: aiohttp.ClientSession, url: str, handle) -> None:
    """Watch a collection for good: `handle(type, object)` for every event, reconnecting on errors."""
    while True:
        try:
            async with session.get(f"{url}?watch=true", timeout=None) as stream:
                async for line in stream.content:
                    if line.strip():
                        event = json.loads(line)
                        await handle(event["type"], event["object"])
        except (aiohttp.ClientError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)


class Kubelet:
    def __init__(self, base: str, session: aiohttp.ClientSession, workdir: Path):
        self.base = base
        self.session = session
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen] = {}
        self.placed: dict[str, tuple[str, dict]] = {}  # pod key -> (node, its GPU requests)
        self.next_ip = 2
        # Pods run as their runAsUser, who must be able to reach their home: not under pytest's private tmp.
        self.homes = Path(tempfile.mkdtemp(prefix="gpulab-pods-", dir="/tmp"))
        self.homes.chmod(0o755)

    def pod_url(self, namespace: str, name: str) -> str:
        return f"{self.base}/api/v1/namespaces/{namespace}/pods/{name}"

    async def patch(self, url: str, body: dict) -> None:
        async with self.session.patch(url, json=body, headers={"Content-Type": "application/merge-patch+json"}) as r:
            r.raise_for_status()

    async def run(self) -> None:
        await follow(self.session, f"{self.base}/api/v1/pods", self.handle)

    async def handle(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        key = f"{meta.get('namespace')}/{meta['name']}"
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self.stop(key)
        elif kind == "ADDED" and key not in self.processes:
            try:
                await self.start(key, pod)
            except Exception as error:  # the pod fails, as a container that cannot start does
                traceback.print_exc()
                namespace, name = key.split("/")
                await self.patch(self.pod_url(namespace, name) + "/status", {"status": {
                    "phase": "Failed", "reason": "StartError", "message": str(error)}})

    async def nodes(self) -> list[dict]:
        async with self.session.get(f"{self.base}/api/v1/nodes") as r:
            return (await r.json())["items"]

    async def place(self, key: str, pod: dict) -> str | None:
        wanted: dict[str, int] = {}
        for container in pod["spec"]["containers"]:
            for resource in (container.get("resources") or {}).get("limits") or {}:
                if resource.startswith("nvidia.com/"):
                    wanted[resource] = wanted.get(resource, 0) + pod_requests({"spec": {"containers": [container]}}, resource)
        for node in await self.nodes():
            name = node["metadata"]["name"]
            allocatable = node.get("status", {}).get("allocatable", {})
            used: dict[str, int] = {}
            for placed_node, requests in self.placed.values():
                if placed_node == name:
                    for resource, n in requests.items():
                        used[resource] = used.get(resource, 0) + n
            if all(quantity(allocatable.get(r)) - used.get(r, 0) >= n for r, n in wanted.items()):
                self.placed[key] = (name, wanted)
                return name
        return None

    async def start(self, key: str, pod: dict) -> None:
        namespace, name = key.split("/")
        url = self.pod_url(namespace, name)
        node = await self.place(key, pod)
        if node is None:
            await self.patch(url + "/status", {"status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/N nodes are available: insufficient GPUs."}]}})
            return
        await self.patch(url, {"spec": {"nodeName": node}})
        # Each emulated cluster its own block of loopback addresses: servers listen on KubeSpawner's
        # port 8888, and test modules on other workers run clusters of their own at the same time.
        ip = f"127.{1 + os.getpid() % 250}.{self.next_ip // 250}.{1 + self.next_ip % 250}"
        self.next_ip += 1
        container = pod["spec"]["containers"][0]
        command = (container.get("command") or []) + (container.get("args") or [])
        env = {e["name"]: await self.env_value(namespace, e, pod) for e in container.get("env") or []}
        serves = "JUPYTERHUB_SERVICE_URL" in env  # a server; otherwise a Job's pod, which runs to its end
        env["JUPYTERHUB_SERVICE_URL"] = env.get("JUPYTERHUB_SERVICE_URL", "").replace("0.0.0.0", ip)
        home = self.homes / name
        home.mkdir(parents=True, exist_ok=True)
        run_as = self.run_as(pod)
        if run_as is not None:
            os.chown(home, *run_as)
        # The image's tools: here, the Python environment this cluster runs from.
        env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        log = open(self.workdir / f"{name}.log", "ab")
        self.processes[key] = subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True, preexec_fn=self.become(run_as))
        if serves:
            port = int(env["JUPYTERHUB_SERVICE_URL"].split(":")[2].split("/")[0])
            await self.wait_listening(ip, port, key)
        else:
            asyncio.ensure_future(self.report_exit(key, url, container["name"]))
        await self.patch(url + "/status", {"status": {
            "phase": "Running", "podIP": ip, "hostIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": container["name"], "ready": True, "restartCount": 0,
                                   "image": container.get("image", ""), "imageID": "",
                                   "state": {"running": {}}}]}})

    async def env_value(self, namespace: str, entry: dict, pod: dict) -> str:
        """A variable's value, from a Secret for `valueFrom.secretKeyRef`, from the pod's annotations
        for a `fieldRef` to `metadata.annotations['...']` (as the real kubelet does)."""
        field = ((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
        if found := re.fullmatch(r"metadata\.annotations\['([^']+)'\]", field):
            return (pod["metadata"].get("annotations") or {}).get(found.group(1), "")
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            return entry.get("value", "")
        async with self.session.get(f"{self.base}/api/v1/namespaces/{namespace}/secrets/{ref['name']}") as r:
            r.raise_for_status()
            secret = await r.json()
        if ref["key"] in (secret.get("data") or {}):
            return base64.b64decode(secret["data"][ref["key"]]).decode()
        return secret["stringData"][ref["key"]]  # the emulator keeps stringData as it was sent

    async def report_exit(self, key: str, url: str, container: str) -> None:
        """A run-to-completion pod: Succeeded or Failed with its exit code once its process ends."""
        process = self.processes.get(key)
        while process is not None and process.poll() is None:
            await asyncio.sleep(0.1)
        if process is None or self.processes.get(key) is not process:
            return  # deleted meanwhile
        code = process.returncode if process.returncode >= 0 else 128 - process.returncode  # as a shell reports a signal
        await self.patch(url + "/status", {"status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": container, "ready": False, "restartCount": 0, "image": "", "imageID": "",
                                   "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                                            else "Error"}}}]}})

    @staticmethod
    def run_as(pod: dict) -> tuple[int, int] | None:
        """The uid and gid the pod's securityContext asks for (a kubelet running as root honours it)."""
        context = pod["spec"].get("securityContext") or {}
        container = pod["spec"]["containers"][0].get("securityContext") or {}
        uid = container.get("runAsUser", context.get("runAsUser"))
        gid = container.get("runAsGroup", context.get("runAsGroup", context.get("fsGroup", uid)))
        return (uid, gid) if uid is not None and os.geteuid() == 0 else None

    @staticmethod
    def become(run_as: tuple[int, int] | None):
        if run_as is None:
            return None

        def drop():
            os.setgroups([run_as[1]])
            os.setgid(run_as[1])
            os.setuid(run_as[0])

        return drop

    async def wait_listening(self, ip: str, port: int, key: str) -> None:
        while self.processes.get(key) is not None and self.processes[key].poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex((ip, port)) == 0:
                    return
            await asyncio.sleep(0.05)

    def stop(self, key: str) -> None:
        self.placed.pop(key, None)
        process = self.processes.pop(key, None)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes.values():
            process.wait()
        self.processes.clear()
        shutil.rmtree(self.homes, ignore_errors=True)


COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


class JobController:
    """The test's stand-in for kube-controller-manager's Job controller: a pod from each new
    Job's template (one per index for an Indexed Job, all at once), the Job's status from its
    pods' ends (a failed pod fails the Job and stops its other pods, as backoffLimit 0 does),
    and the pods deleted with their Job.
    Not covered: retries (gpulab's Jobs set backoffLimit 0), parallelism below completions,
    deadlines, TTLs, gang scheduling (there is none in Kubernetes itself either)."""

    def __init__(self, base: str, session: aiohttp.ClientSession):
        self.base = base
        self.session = session
        self.pods_of: dict[str, list[str]] = {}  # job key -> its pods' names
        self.succeeded: dict[str, set[str]] = {}  # job key -> pods that succeeded
        self.failed: set[str] = set()  # jobs that failed

    async def run(self) -> None:
        await asyncio.gather(follow(self.session, f"{self.base}/apis/batch/v1/jobs", self.job_event),
                             follow(self.session, f"{self.base}/api/v1/pods", self.pod_event))

    async def job_event(self, kind: str, job: dict) -> None:
        meta = job["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = f"{namespace}/{name}"
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            await self.delete_pods(namespace, self.pods_of.pop(key, []))
        elif kind == "ADDED" and key not in self.pods_of:
            template = job["spec"]["template"]
            indexed = job["spec"].get("completionMode") == "Indexed"
            self.pods_of[key] = []
            for index in range(job["spec"].get("completions") or 1 if indexed else 1):
                pod_name = f"{name}-{f'{index}-' if indexed else ''}{uuid.uuid4().hex[:5]}"
                self.pods_of[key].append(pod_name)
                labels = {**(template["metadata"].get("labels") or {}), "job-name": name}
                annotations = dict(template["metadata"].get("annotations") or {})
                spec = json.loads(json.dumps(template["spec"]))
                if indexed:
                    labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
                    spec["hostname"] = f"{name}-{index}"
                    for container in spec["containers"]:
                        container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": pod_name, "namespace": namespace, "labels": labels, "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta["uid"]}]},
                    "spec": spec}
                async with self.session.post(f"{self.base}/api/v1/namespaces/{namespace}/pods", json=pod) as r:
                    r.raise_for_status()

    async def delete_pods(self, namespace: str, names) -> None:
        for pod in names:
            async with self.session.delete(f"{self.base}/api/v1/namespaces/{namespace}/pods/{pod}"):
                pass

    async def pod_event(self, kind: str, pod: dict) -> None:
        job = (pod["metadata"].get("labels") or {}).get("job-name")
        phase = (pod.get("status") or {}).get("phase")
        if job is None or kind != "MODIFIED" or phase not in ("Succeeded", "Failed"):
            return
        namespace = pod["metadata"]["namespace"]
        key = f"{namespace}/{job}"
        if key in self.failed:
            return
        succeeded = self.succeeded.setdefault(key, set())
        if phase == "Succeeded":
            succeeded.add(pod["metadata"]["name"])
            status = {"succeeded": len(succeeded)}
        else:  # backoffLimit 0: the Job fails and its other pods are stopped
            self.failed.add(key)
            status = {"failed": 1, "succeeded": len(succeeded)}
            await self.delete_pods(namespace, [p for p in self.pods_of.get(key, []) if p != pod["metadata"]["name"]
                                               and p not in succeeded])
        url = f"{self.base}/apis/batch/v1/namespaces/{namespace}/jobs/{job}/status"
        async with self.session.patch(url, json={"status": status},
                                      headers={"Content-Type": "application/merge-patch+json"}) as r:
            if r.status != 404:  # the Job may be gone already
                r.raise_for_status()


# What KubeSpawner and gpulab read and write; the emulator serves only declared resources.
RESOURCES = {
    "v1/nodes": {"kind": "Node", "namespaced": False},
    "v1/pods": {"kind": "Pod", "namespaced": True, "subresources": ["status"]},
    "v1/events": {"kind": "Event", "namespaced": True},
    "v1/persistentvolumeclaims": {"kind": "PersistentVolumeClaim", "namespaced": True},
    "v1/secrets": {"kind": "Secret", "namespaced": True},
    "v1/services": {"kind": "Service", "namespaced": True},
    "batch/v1/jobs": {"kind": "Job", "namespaced": True, "subresources": ["status"]},
}


POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus what a real API server does that clients rely on."""

    pod_logs: Path | None = None  # the kubelet's folder of pod outputs, `<pod>.log`

    async def __call__(self, raw_request):
        # The pods/log subresource, from what the kubelet kept of the pod's output.
        if (found := POD_LOG.match(raw_request.path)) and self.pod_logs is not None:
            path = self.pod_logs / f"{found.group(2)}.log"
            if not path.exists():
                return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
            limit = int(raw_request.query.get("limitBytes", 0)) or None
            return web.Response(body=path.read_bytes()[:limit], content_type="text/plain")
        # kubernetes_asyncio sends watch=True; kmock recognises only watch=true.
        if raw_request.query.get("watch") == "True":
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.update_query(watch="true"))
        return await super().__call__(raw_request)

    _version = 0

    async def _handle(self, request):
        # Every write gets a new resourceVersion (watchers resume from it).
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE) and isinstance(request.data, dict):
            ApiServer._version += 1
            request.data.setdefault("metadata", {})["resourceVersion"] = str(ApiServer._version)
        # A created object gets its namespace, uid and creation time (a pod its Pending status) from the server.
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.namespace:
                meta.setdefault("namespace", request.namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            if request.resource.plural == "pods":
                request.data.setdefault("status", {"phase": "Pending"})
        return await super()._handle(request)


async def main(state: Path, nodes: Path, workdir: Path) -> None:
    async with ApiServer() as emulator, kmock.Server(emulator) as server:
        for resource, info in RESOURCES.items():
            for key, value in info.items():
                setattr(emulator.resources[resource], key, value)
        base = str(server.url).rstrip("/")
        async with aiohttp.ClientSession() as session:
            for node in json.loads(nodes.read_text()):
                async with session.post(f"{base}/api/v1/nodes", json=node) as r:
                    r.raise_for_status()
            kubelet = Kubelet(base, session, workdir)
            emulator.pod_logs = workdir
            task = asyncio.ensure_future(asyncio.gather(kubelet.run(), JobController(base, session).run()))
            state.write_text(json.dumps({"url": base}))
            stopped = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopped.set)
            await stopped.wait()
            task.cancel()
            kubelet.stop_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--nodes", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.state, args.nodes, args.workdir))
