"""The Kubernetes backend end to end, without a cluster.

A real hub with gpulab's KubeSpawner subclass and the real proxy talk over HTTP to kmock's
emulated Kubernetes API (tests/k8s/fake_cluster.py), whose test kubelet runs each pod's
server as a local process on its own loopback address.

Not covered: scheduling (the kubelet places pods first-fit on declared GPU capacity and
ignores affinity and taints), the NVIDIA device plugin and GPU Feature Discovery (nodes are
declared with their allocatable GPUs and labels), image pulls, and container isolation.
"""

from __future__ import annotations

import pytest

from gpulab.hub_config.client import ClientError
from tests.support.cluster import container, env_of
from tests.support.hub import wait_for


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
