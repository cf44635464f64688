"""Image pre-pullers run only where their profile's servers can land (z2jh#3490), and the hub
is visible to Prometheus and Grafana."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpulab.compute.profiles import profiles_from_settings
from gpulab.spawner.backends.kubernetes.manifests import GPU_TOLERATION, PRODUCT_LABEL, matching_products, pod_changes
from tests.support.helm import render

HERE = Path(__file__).resolve().parent
EVERYTHING = HERE / "values-everything.yaml"


@pytest.fixture(scope="module")
def docs():
    return render([EVERYTHING])


@pytest.fixture(scope="module")
def profiles():
    values = yaml.safe_load(EVERYTHING.read_text())
    from gpulab.hub_config.settings import complete

    return {p.id: p for p in profiles_from_settings(complete(values["gpulab"], HERE))}


def daemonset(docs: list[dict], profile: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["labels"]["gpulab.dev/profile"] == profile]
    return found["spec"]["template"]["spec"]


def required_terms(spec: dict) -> list[list[dict]]:
    affinity = spec.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    return [term["matchExpressions"] for term in affinity["nodeSelectorTerms"]] if affinity else []


def test_cpu_profile_pulls_without_gpu_tolerations(docs, profiles):
    spec = daemonset(docs, "cpu")
    assert "tolerations" not in spec and "affinity" not in spec and "nodeSelector" not in spec
    assert [c["image"] for c in spec["initContainers"]] == ["ghcr.io/gpulab/cpu:cpu-python-3.12"]


def test_gpu_profile_pulls_only_on_its_nodes(docs, profiles):
    profile = profiles["a100"]
    spec = daemonset(docs, "a100")
    # the same node selector and tolerations as the spawner gives this profile's pods
    pod = pod_changes(profile, "image", "pytorch-cuda12", None, None, ["NVIDIA-A100-SXM4-80GB"])
    assert spec["nodeSelector"] == pod.node_selector == {"gpulab.dev/pool": "a100"}
    assert spec["tolerations"] == pod.tolerations and GPU_TOLERATION in spec["tolerations"]
    (terms,) = required_terms(spec)
    assert {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]} in terms
    products = next(t["values"] for t in terms if t["key"] == PRODUCT_LABEL)
    # the products listed are ones the spawner would accept for this profile (gpu.models)
    assert matching_products(profile, products) == sorted(products)
    assert [c["image"] for c in spec["initContainers"]] == [
        "ghcr.io/gpulab/pytorch:cuda12-pytorch-2.15", "ghcr.io/gpulab/cpu:cpu-python-3.12"]
    assert spec["containers"][0]["image"] == "registry.example.com/pause:3.10"


def test_mig_profile_pulls_on_mig_nodes(docs, profiles):
    spec = daemonset(docs, "mig-small")
    assert spec["tolerations"] == pod_changes(profiles["mig-small"], "image", "pytorch-cuda12", None, None, []).tolerations
    assert spec["tolerations"] == [GPU_TOLERATION]
    assert required_terms(spec) == [[{"key": "nvidia.com/mig.capable", "operator": "In", "values": ["true"]}]]


def test_pullers_are_small_and_unprivileged(docs):
    for profile in ("cpu", "a100", "mig-small"):
        spec = daemonset(docs, profile)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["initContainers"] + spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["limits"]


def test_prometheus_scrapes_the_hubs_metrics_without_a_token():
    docs = render(set_values=["gpulab.hub.base_url=/lab/"])
    (hub,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gpulab-hub"]
    annotations = hub["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8081"
    assert annotations["prometheus.io/path"] == "/lab/hub/metrics"
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gpulab-hub"]
    assert yaml.safe_load(config["data"]["gpulab.yaml"])["hub"]["metrics_public"] is True


def test_without_prometheus_no_annotations(docs):
    (hub,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "team-gpulab-hub"]
    assert not [a for a in hub["spec"]["template"]["metadata"]["annotations"] if a.startswith("prometheus.io/")]


def test_grafana_dashboard_is_valid_json_with_the_promised_panels(docs):
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "team-gpulab-grafana-dashboard"]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1" and config["metadata"]["labels"]["team"] == "ml"
    dashboard = json.loads(config["data"]["gpulab.json"])
    assert dashboard["uid"] == "gpulab-overview"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("jupyterhub_running_servers", "jupyterhub_server_spawn_duration_seconds",
                   "jupyterhub_request_duration_seconds", "kube_pod_container_resource_requests",
                   "gpulab_scheduled_runs"):  # reported by the hub (extensions/scheduler/metrics.py)
        assert metric in exprs
    assert 'resource=~"nvidia_com_gpu|nvidia_com_mig.*"' in exprs  # GPUs and MIG slices allocated
    for panel in panels:
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")")
