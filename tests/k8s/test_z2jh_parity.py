"""Parity with stock KubeSpawner (issue 20, "Done when"): z2jh-style configurations built into
pods by KubeSpawner itself and by gpulab give the same image, resources, affinity, tolerations,
volumes, mounts and environment, apart from what gpulab adds on purpose (GPULAB_ADDS).

Each case is what a z2jh operator has: `c.KubeSpawner.*` settings (from the chart or
extraConfig), one profileList entry, and a request's user_options. Stock KubeSpawner gets
them as they are, with `image` and `profile_list`. gpulab gets the same profile entry in its
`profiles` (slug, kubespawner_override and profile_options as they are), the image as the
catalog's one environment, and the other settings in jupyterhub_config.d (hand-set).
"""

from __future__ import annotations

import pytest
from traitlets.config import Config

from tests.k8s.pod_builds import gpulab_pod, offline, stock_pod, user

IMAGE = "quay.io/jupyterhub/k8s-singleuser-sample:4.0.0"
# Environment variables gpulab sets on purpose: its own wiring, the extensions' (MLflow,
# TensorBoard, ...), CPU-only pods hiding GPUs, and the server's default URL (/lab).
GPULAB_ADDS = ("GPULAB_", "MLFLOW_", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "JUPYTERHUB_DEFAULT_URL")

IMAGE_OPTION = {"display_name": "Image", "choices": {
    "base": {"display_name": "Base", "kubespawner_override": {"image": "jupyter/base-notebook:2024-07-29"}},
    "scipy": {"display_name": "SciPy", "default": True, "kubespawner_override": {"image": "jupyter/scipy-notebook:2024-07-29"}}},
    "unlisted_choice": {"enabled": True, "display_name": "Image", "validation_regex": "^jupyter/.+:.+$",
                        "kubespawner_override": {"image": "{value}", "extra_labels": {"custom-image": "yes"}}}}
HOME = ({"home": {"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}}},
        {"home": {"name": "home", "mountPath": "/home/jovyan"}})

CASES = {
    "limits-and-guarantees": (
        {"cpu_limit": 2.0, "cpu_guarantee": 0.5, "mem_limit": "4G", "mem_guarantee": "1G"},
        {"display_name": "Large", "slug": "large", "kubespawner_override": {"cpu_limit": 8.0, "mem_limit": "32G"}},
        {"profile": "large"}),
    "extra-resources": (
        {"extra_resource_limits": {"ephemeral-storage": "10Gi"}, "extra_resource_guarantees": {"ephemeral-storage": "1Gi"}},
        {"display_name": "Scratch", "slug": "scratch", "kubespawner_override": {
            "mem_guarantee": "2G", "extra_resource_limits": {"ephemeral-storage": "50Gi"}}},
        {"profile": "scratch"}),
    "gpu-the-z2jh-way": (
        {"tolerations": [{"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"}]},
        {"display_name": "GPU", "slug": "gpu", "kubespawner_override": {
            "extra_resource_limits": {"nvidia.com/gpu": "1"}, "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]}},
        {"profile": "gpu"}),
    "scheduling": (
        {"node_affinity_preferred": [{"weight": 100, "preference": {"matchExpressions": [
            {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}]}}],
         "pod_anti_affinity_preferred": [{"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                                            "labelSelector": {"matchLabels": {"component": "hub"}}}}],
         "node_selector": {"pool": "users"}},
        {"display_name": "Big nodes", "slug": "big", "kubespawner_override": {"node_selector": {"size": "xl"}}},
        {"profile": "big"}),
    "operator-tolerations-kept": (
        {"tolerations": [{"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"}],
         "node_affinity_required": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
        {"display_name": "Default", "slug": "default", "default": True},
        {}),
    "storage-and-extra-volumes": (
        {"volumes": HOME[0], "volume_mounts": HOME[1]},
        {"display_name": "Shared data", "slug": "shared", "kubespawner_override": {
            "volumes": {"data": {"name": "data", "nfs": {"server": "nfs.example", "path": "/data/{username}"}}},
            "volume_mounts": {"data": {"name": "data", "mountPath": "/data", "subPath": "{servername}"}}}},
        {"profile": "shared"}),
    "environment-templates-and-removal": (
        {"environment": {"SCRATCH": "/scratch/{username}", "SERVER": "{servername}", "DROP_ME": "x"}},
        {"display_name": "Env", "slug": "env", "kubespawner_override": {"environment": {"DROP_ME": None, "EXTRA": "{user_server}"}}},
        {"profile": "env"}),
    "option-listed-choice": ({}, {"display_name": "Choose", "slug": "choose", "profile_options": {"image": IMAGE_OPTION}},
                             {"profile": "choose", "image": "base"}),
    "option-default-choice": ({}, {"display_name": "Choose", "slug": "choose", "profile_options": {"image": IMAGE_OPTION}},
                              {"profile": "choose"}),
    "option-unlisted-choice": ({}, {"display_name": "Choose", "slug": "choose", "profile_options": {"image": IMAGE_OPTION}},
                               {"profile": "choose", "image--unlisted-choice": "jupyter/r-notebook:2024-07-29"}),
    "slug-from-display-name-and-two-options": (
        {"cpu_limit": 1.0},
        {"display_name": "Data Science (R & Python)", "kubespawner_override": {"cpu_limit": 4.0},
         "profile_options": {
             "image": IMAGE_OPTION,
             "size": {"display_name": "Size", "choices": {
                 "s": {"display_name": "S", "kubespawner_override": {"mem_limit": "2G"}},
                 "l": {"display_name": "L", "kubespawner_override": {"mem_limit": "16G", "cpu_limit": 6.0}}}}}},
        {"profile": "data-science-r-python", "image": "scipy", "size": "l"}),
}


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    offline(monkeypatch)
    path = tmp_path / "catalog.yaml"
    registry, rest = IMAGE.split("/", 1)
    name, tag = rest.rsplit(":", 1)
    path.write_text(f"""
registry: {registry}
environments:
  - {{id: singleuser, display_name: Singleuser, description: d, image: {name}, tag: "{tag}", gpu: false,
     python: "3.11", approx_size_gb: 1, local_python: ""}}
""")
    yield path


def compared(pod: dict) -> dict:
    container = pod["spec"]["containers"][0]
    return {"image": container["image"], "resources": container["resources"],
            "affinity": pod["spec"].get("affinity"), "tolerations": pod["spec"].get("tolerations"),
            "node_selector": pod["spec"].get("nodeSelector"), "volumes": pod["spec"].get("volumes"),
            "mounts": container.get("volumeMounts"),
            "env": {e["name"]: e.get("value") for e in container["env"] if not e["name"].startswith(GPULAB_ADDS)}}


@pytest.mark.parametrize("case", CASES)
async def test_the_same_pod_as_stock_kubespawner(case, catalog):
    settings, profile, options = CASES[case]
    owner = user("ada-lovelace")
    stock = Config()
    for name, value in {**settings, "image": IMAGE, "profile_list": [profile]}.items():
        stock.KubeSpawner[name] = value
    hand_set = Config()
    for name, value in settings.items():
        hand_set.KubeSpawner[name] = value
    values = {"profiles": [profile], "environments": {"catalog": str(catalog)}}
    expected = compared(await stock_pod(stock, options, owner, server="run-1"))
    got = compared(await gpulab_pod(values, options, [], hand_set, owner, server="run-1"))
    assert got == expected


async def test_gpus_asked_for_through_kubespawner_override_are_not_hidden(catalog):
    settings, profile, options = CASES["gpu-the-z2jh-way"]
    pod = await gpulab_pod({"profiles": [profile], "environments": {"catalog": str(catalog)}}, options)
    names = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert "NVIDIA_VISIBLE_DEVICES" not in names  # CPU profiles get "void"; this one asks for nvidia.com/gpu
