"""A profile merges into what the operator configured on KubeSpawner (issue 20, items 4 to 6).

Pods are built as a hub would build them (tests/k8s/pod_builds.py): the operator's
`c.KubeSpawner.*` settings as jupyterhub_config.d sets them, gpulab's settings through
apply_config, and a profile chosen per spawn.
"""

from __future__ import annotations

import pytest
from traitlets.config import Config

from gpulab.spawner.backends.kubernetes import spawner as kubernetes
from tests.k8s.pod_builds import gpulab_config, gpulab_pod, gpulab_spawner, offline, spawn_manifest, user
from tests.support.cluster import node
from tests.support.gpu_hub import catalog


PROFILES = [
    {"id": "cpu", "display_name": "CPU", "default": True, "cpu": {"limit": 2}, "memory": {"limit": "4G"}},
    {"id": "a100", "display_name": "1 A100", "gpu": {"count": 1, "models": ["A100"]}, "memory": {"limit": "8G"},
     "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]},
    {"id": "small", "display_name": "Small", "cpu": {"guarantee": 0.5}},
]
NODES = [node("gpu-node", 2)]


@pytest.fixture
def values(tmp_path, monkeypatch):
    offline(monkeypatch)
    yield {"profiles": PROFILES, "environments": {"catalog": str(catalog(tmp_path))}}
    kubernetes._cluster = None


def operator(**settings) -> Config:
    c = Config()
    for name, value in settings.items():
        c.KubeSpawner[name] = value
    return c


def resources(pod):
    return pod["spec"]["containers"][0]["resources"]


def env(pod):
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


async def test_resources_merge_and_requests_follow_guarantees(values):
    hand_set = operator(extra_resource_limits={"ephemeral-storage": "10Gi"},
                        extra_resource_guarantees={"ephemeral-storage": "1Gi"},
                        cpu_guarantee=0.25, mem_guarantee="1G", cpu_limit=16.0)
    gpu = await gpulab_pod(values, {"profile": "a100"}, NODES, hand_set)
    assert resources(gpu) == {
        "limits": {"cpu": 16.0, "memory": 8000000000, "ephemeral-storage": "10Gi", "nvidia.com/gpu": "1"},
        "requests": {"cpu": 0.25, "memory": 2**30, "ephemeral-storage": "1Gi", "nvidia.com/gpu": "1"}}
    small = await gpulab_pod(values, {"profile": "small"}, NODES, hand_set)
    assert resources(small)["requests"]["cpu"] == 0.5  # the profile's guarantee replaces the operator's


async def test_a_gpu_profile_keeps_the_operator_s_affinity_and_tolerations(values):
    preferred = [{"weight": 1, "preference": {"matchExpressions": [
        {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}]}}]
    required = [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}]}]
    anti = [{"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                               "labelSelector": {"matchLabels": {"component": "singleuser-server"}}}}]
    toleration = {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"}
    hand_set = operator(node_affinity_preferred=preferred, node_affinity_required=required,
                        pod_anti_affinity_preferred=anti, tolerations=[toleration])
    pod = await gpulab_pod(values, {"profile": "a100"}, NODES, hand_set)
    affinity = pod["spec"]["affinity"]
    assert affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == anti
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    zone = required[0]["matchExpressions"][0]
    assert len(terms) == 2 and all(term["matchExpressions"][0] == zone for term in terms)  # ANDed into each GPU term
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]} in terms[0]["matchExpressions"]
    assert pod["spec"]["tolerations"] == [
        toleration, {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]


async def test_volumes_are_added_to_and_an_operator_s_own_shm_is_kept(values):
    data = {"name": "data", "persistentVolumeClaim": {"claimName": "data-{username}"}}
    mount = {"name": "data", "mountPath": "/data"}
    pod = await gpulab_pod(values, {"profile": "a100"}, NODES, operator(volumes=[data], volume_mounts=[mount]))
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["data", "dshm"]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "data-ada"}
    shm = {"name": "shm", "emptyDir": {"medium": "Memory"}}
    own = operator(volumes={"shm": shm}, volume_mounts={"shm": {"name": "shm", "mountPath": "/dev/shm"}})
    pod = await gpulab_pod(values, {"profile": "a100"}, NODES, own)
    assert pod["spec"]["volumes"] == [shm]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "shm", "mountPath": "/dev/shm"}]


async def test_username_and_servername_expand_in_the_admin_s_environment_only(values):
    values = {**values, "spawner": {"environment": {"SCRATCH": "/scratch/{username}/{servername}"}}}
    pod = await gpulab_pod(values, {}, NODES, owner=user("bob"), server="exp")
    assert env(pod)["SCRATCH"] == "/scratch/bob/exp"
    assert env(pod)["GPULAB_URL"].startswith("http")  # gpulab's own (literal) variables still there
    assert env(pod)["JUPYTER_IMAGE"] == "test/cpu:t"  # the image the pod runs, not the configured default


async def test_one_spawn_s_profile_does_not_reach_the_next(values):
    hand_set = operator(tolerations=[{"key": "user", "operator": "Exists"}], extra_resource_limits={"x/y": "1"})
    spawner = gpulab_spawner(gpulab_config(values, hand_set), NODES)
    first = await spawn_manifest(spawner, {"profile": "a100"})
    second = await spawn_manifest(spawner, {"profile": "cpu"})
    assert len(first["spec"]["tolerations"]) == 3 and "nvidia.com/gpu" in resources(first)["limits"]
    assert second["spec"]["tolerations"] == [{"key": "user", "operator": "Exists"}]
    assert resources(second)["limits"] == {"cpu": 2.0, "memory": 4000000000, "x/y": "1"}
    assert "affinity" not in second["spec"] and [v["name"] for v in second["spec"]["volumes"]] == []


async def test_profile_options_and_kubespawner_override_reach_the_pod_and_bad_choices_are_400(values):
    from tornado.web import HTTPError

    image = {"display_name": "Image", "choices": {"base": {"display_name": "Base", "kubespawner_override": {
                 "image": "jupyter/base-notebook:2024", "environment": {"FLAVOUR": "base", "A": None}}}},
             "unlisted_choice": {"enabled": True, "validation_regex": "^jupyter/", "kubespawner_override": {"image": "{value}"}}}
    values = {**values, "profiles": PROFILES + [{"slug": "custom", "display_name": "Custom", "profile_options": {"image": image},
                                                 "kubespawner_override": {"extra_resource_limits": {"ephemeral-storage": "5Gi"},
                                                                          "environment": {"A": "1"}}}]}
    pod = await gpulab_pod(values, {"profile": "custom"}, NODES)
    assert pod["spec"]["containers"][0]["image"] == "jupyter/base-notebook:2024"
    assert env(pod)["FLAVOUR"] == "base" and "A" not in env(pod)  # a None value removes the variable
    assert resources(pod)["limits"]["ephemeral-storage"] == "5Gi"
    pod = await gpulab_pod(values, {"profile": "custom", "image--unlisted-choice": "jupyter/r-notebook:1"}, NODES)
    assert pod["spec"]["containers"][0]["image"] == "jupyter/r-notebook:1" and env(pod)["A"] == "1"
    for asked, message in (({"profile": "custom", "image--unlisted-choice": "evil/miner"}, "must match ^jupyter/"),
                           ({"profile": "cpu", "image": "base"}, "unknown option(s): image; expected profile, environment")):
        with pytest.raises(HTTPError) as refused:
            await gpulab_pod(values, asked, NODES)
        assert refused.value.status_code == 400 and message in refused.value.log_message
