"""Kubernetes pod changes for profiles (pure builders against literal dicts) and cluster capacity."""

from __future__ import annotations

from gpulab.spawner.backends.kubernetes.capacity import best_driver, cluster_availability, gang_shortfall, gpus_by_user
from gpulab.spawner.backends.kubernetes.manifests import GPU_TOLERATION, node_affinity, pod_changes, profile_settings, required_terms, resources
from tests.support.gpu_profiles import CPU, GPU2, MIG, profiles

CPU_P, GPU2_P, MIG_P = profiles(CPU, {**GPU2, "memory": {"limit": "32G"}, "cpu": {"limit": 8, "guarantee": 0.5}}, MIG)


def test_cpu_profile_hides_gpus_and_sets_limits():
    changes = pod_changes(CPU_P, "ghcr.io/gpulab/cpu:python-3.12", "cpu", None, None, [])
    assert changes.resources == {"limits": {"cpu": "2", "memory": "4000000000"}, "requests": {}}
    assert changes.env == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert (changes.tolerations, changes.affinity, changes.volumes) == ([], None, [])
    assert changes.labels == {"gpulab.dev/profile": "cpu", "gpulab.dev/environment": "cpu"}


def test_gpu_profile_resources_toleration_shm_and_affinity():
    changes = pod_changes(GPU2_P, "ghcr.io/gpulab/pytorch:cuda12", "pytorch-cuda12", "12.8", "570.26",
                          ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-PCIE-40GB"])
    assert changes.resources == {
        "limits": {"cpu": "8", "memory": "32000000000", "nvidia.com/gpu": "2"},
        "requests": {"cpu": "500m", "nvidia.com/gpu": "2"},
    }
    assert changes.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert changes.volumes == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32000000000"}}]
    assert changes.volume_mounts == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert changes.env == {}
    products = {"key": "nvidia.com/gpu.product", "operator": "In",
                "values": ["NVIDIA-A100-PCIE-40GB", "NVIDIA-A100-SXM4-80GB"]}
    assert changes.affinity == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [products, {"key": "nvidia.com/cuda.driver.major", "operator": "Gt", "values": ["570"]}]},
        {"matchExpressions": [products, {"key": "nvidia.com/cuda.driver.major", "operator": "In", "values": ["570"]},
                              {"key": "nvidia.com/cuda.driver.minor", "operator": "Gt", "values": ["25"]}]},
    ]}}}


def test_mig_profile_asks_for_the_mig_resource():
    assert resources(MIG_P) == {"limits": {"nvidia.com/mig-1g.10gb": "1"}, "requests": {"nvidia.com/mig-1g.10gb": "1"}}


def test_no_affinity_without_models_or_cuda():
    assert node_affinity(MIG_P, [], None, None) is None


CONFIGURED = {"extra_resource_limits": {"ephemeral-storage": "10Gi"}, "extra_resource_guarantees": {},
              "node_selector": {"pool": "users"}, "tolerations": {"user": {"key": "user", "operator": "Exists"}},
              "node_affinity_required": [], "volumes": [], "volume_mounts": [], "environment": {"A": "1"},
              "extra_labels": {}}


def test_profile_settings_add_to_the_configured_ones():
    changes = pod_changes(GPU2_P, "img", "pytorch-cuda12", None, None, ["NVIDIA-A100-SXM4-80GB"])
    settings = profile_settings(CONFIGURED, changes, GPU2_P)
    assert settings["image"] == "img"
    assert (settings["cpu_limit"], settings["cpu_guarantee"], settings["mem_limit"]) == (8, 0.5, 32000000000)
    assert "mem_guarantee" not in settings  # the profile sets none: the configured one stays
    assert settings["extra_resource_limits"] == {"ephemeral-storage": "10Gi", "nvidia.com/gpu": "2"}
    assert settings["extra_resource_guarantees"] == {"nvidia.com/gpu": "2"}
    assert settings["node_selector"] == {"pool": "users"}
    assert settings["tolerations"] == [{"key": "user", "operator": "Exists"}, GPU_TOLERATION]
    assert settings["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32000000000"}}]
    assert settings["environment"] == {"A": "1"}
    assert CONFIGURED["extra_resource_limits"] == {"ephemeral-storage": "10Gi"}  # the input is not modified


def test_cpu_profile_settings_hide_gpus_and_keep_configured_volumes_as_a_dict():
    configured = {**CONFIGURED, "volumes": {"home": {"name": "home"}}, "volume_mounts": {"home": {"name": "home"}}}
    settings = profile_settings(configured, pod_changes(CPU_P, "img", "cpu", None, None, []), CPU_P)
    assert settings["environment"] == {"A": "1", "NVIDIA_VISIBLE_DEVICES": "void"}
    assert settings["volumes"] == {"home": {"name": "home"}} and "node_affinity_required" not in settings
    assert "extra_resource_limits" not in settings  # no GPU: the configured extra resources stay as they are


def test_required_node_terms_are_anded():
    zone_a, zone_b = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, \
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
    gpu = {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
    assert required_terms([], [gpu]) == [gpu] and required_terms([zone_a], []) == [zone_a]
    assert required_terms([zone_a, zone_b], [gpu]) == [
        {"matchExpressions": zone_a["matchExpressions"] + gpu["matchExpressions"]},
        {"matchExpressions": zone_b["matchExpressions"] + gpu["matchExpressions"]}]


def node(name, gpus, product="NVIDIA-A100-SXM4-80GB", driver=("570", "86", "15"), resource="nvidia.com/gpu", **extra):
    labels = {"nvidia.com/gpu.product": product, "nvidia.com/cuda.driver.major": driver[0],
              "nvidia.com/cuda.driver.minor": driver[1], "nvidia.com/cuda.driver.rev": driver[2]}
    return {"metadata": {"name": name, "labels": labels}, "spec": extra.get("spec", {}),
            "status": {"allocatable": {resource: str(gpus)}, "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(node_name, gpus, user="alice", phase="Running", resource="nvidia.com/gpu"):
    return {"metadata": {"labels": {"hub.jupyter.org/username": user}},
            "spec": {"nodeName": node_name, "containers": [{"resources": {"limits": {resource: str(gpus)},
                                                                          "requests": {resource: str(gpus)}}}]},
            "status": {"phase": phase}}


def test_cluster_availability_needs_enough_gpus_on_one_node():
    nodes = [node("a", 4), node("b", 4), node("h", 8, product="NVIDIA-H100-80GB-HBM3"),
             node("cordoned", 8, spec={"unschedulable": True})]
    pods = [pod("a", 3), pod("b", 3), pod("b", 1, phase="Succeeded")]
    two = cluster_availability(GPU2_P, nodes, pods)  # A100 only: nodes a and b
    assert (two.free, two.total, two.enough) == (2, 8, False)
    assert two.label == "2 of 8 NVIDIA-A100-SXM4-80GB free (at most 1 on one node)"
    mig = cluster_availability(MIG_P, [node("m", 7, resource="nvidia.com/mig-1g.10gb")],
                               [pod("m", 2, resource="nvidia.com/mig-1g.10gb")])
    assert (mig.label, mig.enough) == ("5 of 7 MIG 1g.10gb slices free", True)
    assert cluster_availability(CPU_P, nodes, pods) is None
    assert cluster_availability(MIG_P, nodes, pods).label == "no nodes with MIG 1g.10gb slices in the cluster"


def test_a_gang_of_pods_is_admitted_only_when_every_pod_fits_now():
    """Issue 21: a multi-node job's pods (GPU2_P: 2 A100s each) are placed by the nodes' free GPUs."""
    nodes = [node("a", 4), node("b", 4), node("h", 8, product="NVIDIA-H100-80GB-HBM3")]
    assert gang_shortfall(GPU2_P, 4, nodes, []) is None  # two pods on each A100 node
    busy = [pod("a", 3), pod("b", 1)]  # a: 1 free, b: 3 free -> one pod of 2 fits
    assert gang_shortfall(GPU2_P, 1, nodes, busy) is None
    assert gang_shortfall(GPU2_P, 2, nodes, busy) == (
        "all 2 pods at once need 2 free GPU(s) each; the cluster has room for 1 now (free by node: a 1, b 3)")
    assert "no node of the profile's kind" in gang_shortfall(MIG_P, 2, nodes, [])


def test_gpus_held_by_user_and_best_driver():
    assert gpus_by_user([pod("a", 2), pod("a", 1, user="bob"), pod("b", 4, phase="Failed")]) == {"alice": 2, "bob": 1}
    run = {**pod("b", 2, phase="Pending"), "metadata": {"annotations": {"gpulab.dev/owner": "bob"}}}  # a scheduled run's
    assert gpus_by_user([pod("a", 1, user="bob"), run]) == {"bob": 3}
    nodes = [node("a", 4, driver=("535", "104", "05")), node("b", 4, driver=("570", "86", "15"))]
    assert best_driver(GPU2_P, nodes, []) == "570.86.15"
