"""kmock's emulated Kubernetes API as a test cluster (tests/k8s/fake_cluster.py): its nodes, the
`running_cluster` that starts it, and what tests read from its pods.

Not covered by the emulation: scheduling (the kubelet places pods first-fit on declared GPU
capacity and ignores affinity and taints), the NVIDIA device plugin and GPU Feature Discovery
(nodes are declared with their allocatable GPUs and labels), image pulls, container isolation.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.hub import wait_for

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "gpulab-users"


def node(name: str, gpus: int, product: str = "NVIDIA-A100-SXM4-80GB") -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product,
                                                  "nvidia.com/cuda.driver.major": "570",
                                                  "nvidia.com/cuda.driver.minor": "86",
                                                  "nvidia.com/cuda.driver.rev": "15"}},
            "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


class Cluster:
    def __init__(self, url: str, process: subprocess.Popen, workdir: Path):
        self.url, self.process, self.workdir = url, process, workdir

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path) as response:
            return json.loads(response.read())

    def pods(self) -> list[dict]:
        return self.get(f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]

    def kubeconfig(self, folder: Path) -> Path:
        """A kubeconfig for this cluster in `folder` (no credentials: the emulator asks for none)."""
        path = folder / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "nobody", "namespace": NAMESPACE}}],
            "users": [{"name": "nobody", "user": {}}]}))
        return path

    def pod_of(self, user: str) -> dict | None:
        return next((p for p in self.pods() if p["metadata"].get("labels", {}).get("hub.jupyter.org/username") == user),
                    None)


@contextlib.contextmanager
def running_cluster(workdir: Path):
    """The emulated cluster (two nodes of 2 A100s, one CPU node) running until the block ends."""
    (workdir / "nodes.json").write_text(json.dumps([node("gpu-node-a", 2), node("gpu-node-b", 2),
                                                    node("cpu-node", 0, product="")]))
    state = workdir / "state.json"
    process = subprocess.Popen([sys.executable, "-m", "tests.k8s.fake_cluster", "--state", str(state),
                                "--nodes", str(workdir / "nodes.json"), "--workdir", str(workdir)],
                               cwd=REPO, stdout=open(workdir / "cluster.log", "wb"), stderr=subprocess.STDOUT)
    wait_for(state.exists, 30, "the emulated cluster")
    yield Cluster(json.loads(state.read_text())["url"], process, workdir)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def container(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


def env_of(pod: dict) -> dict:
    return {e["name"]: e.get("value") for e in container(pod).get("env", [])}
