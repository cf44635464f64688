"""The Kubernetes backend end to end, without a cluster.

A real hub with gpulab's KubeSpawner subclass and the real proxy talk over HTTP to kmock's
emulated Kubernetes API (tests/k8s/fake_cluster.py), whose test kubelet runs each pod's
server as a local process on its own loopback address.

Not covered: scheduling (the kubelet places pods first-fit on declared GPU capacity and
ignores affinity and taints), the NVIDIA device plugin and GPU Feature Discovery (nodes are
declared with their allocatable GPUs and labels), image pulls, and container isolation.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gpulab.hub_config.client import ClientError
from tests.support.gpu_hub import catalog
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cluster")
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


TUNED = {
    "id": "tuned", "display_name": "Tuned", "kubespawner_override": {"extra_labels": {"team": "ml"}},
    "profile_options": {"image": {
        "display_name": "Image",
        "choices": {"minimal": {"display_name": "Minimal", "default": True,
                                "kubespawner_override": {"image": "test/minimal:1"}},
                    "scipy": {"display_name": "SciPy", "kubespawner_override": {
                        "image": "test/scipy:2", "environment": {"FLAVOUR": "scipy"}, "mem_limit": "6G"}}},
        "unlisted_choice": {"enabled": True, "display_name": "Image", "validation_regex": "^test/",
                            "validation_message": "images come from test/", "kubespawner_override": {"image": "{value}"}},
    }},
}


@pytest.fixture(scope="module")
def hub(module_hub_factory, cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kube-hub")
    kubeconfig = cluster.kubeconfig(folder)
    return module_hub_factory.start({
        "spawner": {"backend": "kubernetes", "kubernetes": {"namespace": NAMESPACE}},
        "profiles": [
            {"id": "cpu", "display_name": "CPU", "default": True, "cpu": {"limit": 2}, "memory": {"limit": "4G"}},
            {"id": "a100", "display_name": "1 A100", "gpu": {"count": 1, "models": ["A100"]}, "memory": {"limit": "8G"}},
            {"id": "quad", "display_name": "4 GPUs", "gpu": {"count": 4}},
            TUNED,  # tests/k8s/test_scheduler_jobs.py: options for a run as for a server
        ],
        "environments": {"catalog": str(catalog(folder))},
        "quotas": {"users": {"capped": {"max_gpus": 1}}},  # tests/k8s/test_scheduler_jobs.py
    }, name="kube", extra_env={"KUBECONFIG": str(kubeconfig)})


def container(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


def env_of(pod: dict) -> dict:
    return {e["name"]: e.get("value") for e in container(pod).get("env", [])}


def test_a_cpu_server_runs_in_a_pod_that_sees_no_gpu(hub, cluster):
    hub.create_user("kate")
    hub.spawn("kate")
    assert "started" in hub.api.request("GET", "user/kate/api/status")
    pod = cluster.pod_of("kate")
    assert container(pod)["image"] == "test/cpu:t"
    assert env_of(pod)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert container(pod)["resources"] == {"limits": {"cpu": 2.0, "memory": 4000000000}, "requests": {}}
    assert pod["metadata"]["labels"]["gpulab.dev/profile"] == "cpu"
    hub.stop_server("kate")
    wait_for(lambda: cluster.pod_of("kate") is None, 30, "kate's pod to be deleted")


def test_a_gpu_server_asks_the_device_plugin_for_its_gpu(hub, cluster):
    hub.create_user("gary")
    hub.spawn("gary", options={"profile": "a100"})
    assert "started" in hub.api.request("GET", "user/gary/api/status")
    pod = cluster.pod_of("gary")
    assert container(pod)["image"] == "test/torch:cuda12"
    assert container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8000000000"}} in pod["spec"]["volumes"]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]} in terms[0]["matchExpressions"]
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(pod)
    hub.stop_server("gary")


def test_no_node_with_enough_gpus_is_refused_at_once_not_left_pending(hub, cluster):
    hub.create_user("greedy")
    with pytest.raises(ClientError) as refused:
        hub.api.request("POST", "hub/api/users/greedy/server", {"profile": "quad"})
    assert refused.value.status == 409
    assert "full: 4 of 4 NVIDIA-A100-SXM4-80GB free (at most 2 on one node)" in refused.value.message
    assert cluster.pod_of("greedy") is None


def test_availability_follows_the_pods_in_the_cluster(hub, cluster):
    for name in ("ann", "ben"):
        hub.create_user(name)
        hub.spawn(name, options={"profile": "a100"})
    hub.create_user("cal")
    hub.spawn("cal", "two", options={"profile": "a100"})
    hub.spawn("cal", "three", options={"profile": "a100"})
    hub.create_user("dot")
    with pytest.raises(ClientError) as refused:  # the watch saw all four GPUs taken
        hub.api.request("POST", "hub/api/users/dot/server", {"profile": "a100"})
    assert refused.value.status == 409 and "0 of 4" in refused.value.message
    hub.stop_server("ann")
    wait_for(lambda: cluster.pod_of("ann") is None, 30, "ann's pod to go")
    wait_for(lambda: _spawned(hub, "dot"), 60, "a GPU to free up for dot")
    for name, server in (("ben", ""), ("cal", "two"), ("cal", "three"), ("dot", "")):
        hub.stop_server(name, server)


def _spawned(hub, name: str) -> bool:
    try:
        hub.spawn(name, options={"profile": "a100"})
        return True
    except ClientError as error:
        assert error.status == 409, error.message
        return False
