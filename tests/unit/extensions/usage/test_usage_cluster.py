"""GPU usage on Kubernetes without a cluster: gpulab's pods (literal pod objects shaped as
KubeSpawner and the scheduler's Jobs make them) as usage intervals, DCGM exporter readings
(a literal exposition in the exporter's own format) attributed to them, on a real SQLite
ledger with a controllable clock; what the page, the API and the CLI say without DCGM.

Not covered here: listing pods from an API server and reading an exporter over HTTP
(tests/k8s/test_usage_on_kubernetes.py does both against the emulated cluster).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from traitlets.config import Config

from gpulab.compute.budgets import Spent
from gpulab.compute.usage import Reading
from gpulab.compute.usage_report import period, spent_reader, summarise
from gpulab.spawner.backends.kubernetes.job_manifests import run_job
from gpulab.extensions.usage.cli import table
from gpulab.extensions.usage.cluster import ClusterUsage, held_devices
from gpulab.extensions.usage.core import Asker, UsageCore
from gpulab.extensions.usage.dcgm import pod_readings
from gpulab.extensions.usage.pods import PodHolding, pod_claim_id, pod_holding, running_holdings
from gpulab.hub_config.apply import apply_config
from gpulab.spawner.backends.kubernetes.capacity import gpus_by_user
from tests.support.job_requests import GPU2_P, KUBE, PROJECTS, request
from tests.support.settings import typed_settings
from tests.support.usage_ledger import START, Clock, intervals, migrated_sessions


NS = "gpulab"


@pytest.fixture
def sessions(tmp_path):
    return migrated_sessions(tmp_path)


def server_pod(user: str, slug: str, uid: str, gpus: dict, server: str = "", phase: str = "Running",
               cpu="4", profile: str = "a100", project: str = "") -> dict:
    """A server's pod as KubeSpawner 7 makes it (the name in annotations, slugs in labels), with
    gpulab's labels (spawner/manifests.pod_changes)."""
    annotations = {"hub.jupyter.org/username": user, "hub.jupyter.org/kubespawner-version": "7.1.0"}
    if server:
        annotations["hub.jupyter.org/servername"] = server
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"jupyter-{slug}{'--' + server if server else ''}", "namespace": NS, "uid": uid,
                     "labels": {"hub.jupyter.org/username": slug, "hub.jupyter.org/servername": server,
                                "component": "singleuser-server", "app.kubernetes.io/component": "singleuser-server",
                                "gpulab.dev/profile": profile, "gpulab.dev/environment": "pytorch-cuda12",
                                **({"gpulab.dev/project": project} if project else {})},
                     "annotations": annotations},
        "spec": {"containers": [{"name": "notebook", "resources": {
            "limits": {"cpu": cpu, "memory": 8000000000, **gpus}, "requests": dict(gpus)}}]},
        "status": {"phase": phase},
    }


def run_pod(run_id: str, owner: str, uid: str, project: str = "", phase: str = "Running") -> dict:
    """A run's pod as the Job controller makes it from the scheduler's Job (job_manifests.run_job)."""
    job = run_job(request(GPU2_P, run_id=run_id, owner=owner, namespace=NS, project=project), KUBE, PROJECTS, [])
    template = job["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"gpulab-run-{run_id}-x7k2p", "namespace": NS, "uid": uid,
                         "labels": {**template["metadata"]["labels"], "job-name": job["metadata"]["name"]},
                         "annotations": template["metadata"]["annotations"]},
            "spec": template["spec"], "status": {"phase": phase}}


ANN = server_pod("Ann@x.org", "ann-x-org---1a2b3c4d", "0b6f3c1e-7f1d-4a8e-9c0b-1d2e3f4a5b6c", {"nvidia.com/gpu": "1"})
ANN_BIG = server_pod("Ann@x.org", "ann-x-org---1a2b3c4d", "5e8a0f2d-1111-4c3b-a2a1-000000000002",
                     {"nvidia.com/gpu": 2}, server="big", cpu="500m", project="nlp")
BOB_MIG = server_pod("bob", "bob", "7c1d2e3f-2222-4bbb-8ccc-000000000003", {"nvidia.com/mig-1g.10gb": "1"},
                     profile="mig")
RUN = run_pod("r7", "carl", "9a8b7c6d-3333-4ddd-9eee-000000000004", project="vision")


def test_gpulab_pods_that_hold_gpus_are_holdings_named_as_claims_are():
    ann = pod_holding(ANN)
    assert ann == PodHolding("pod:0b6f3c1e7f1d4a8e9c0b1d2e3f4a", NS, "jupyter-ann-x-org---1a2b3c4d", "Ann@x.org",
                             "server:Ann@x.org/", "a100", "", 1, 4.0)
    big = pod_holding(ANN_BIG)
    assert (big.purpose, big.gpus, big.cpus, big.project) == ("server:Ann@x.org/big", 2, 0.5, "nlp")
    assert (pod_holding(BOB_MIG).gpus, pod_holding(BOB_MIG).profile) == (1, "mig")  # a MIG instance counts as one
    run = pod_holding(RUN)
    assert (run.owner, run.purpose, run.project, run.profile, run.gpus, run.cpus) == (
        "carl", "run:r7", "vision", "gpu-2", 2, 0.0)  # the profile sets no CPU limit
    assert len(run.claim_id) == 32 and run.claim_id == pod_claim_id(RUN["metadata"]["uid"])


def test_pods_that_hold_nothing_or_are_not_gpulabs_or_not_running_are_left_out():
    cpu = server_pod("dan", "dan", "c0000000-0000-4000-8000-000000000005", {})
    pending = server_pod("eve", "eve", "c0000000-0000-4000-8000-000000000006", {"nvidia.com/gpu": "1"}, phase="Pending")
    done = run_pod("r8", "carl", "c0000000-0000-4000-8000-000000000007", phase="Succeeded")
    stranger = {"metadata": {"name": "cuda-test", "namespace": NS, "uid": "c0000000-0000-4000-8000-000000000008",
                             "labels": {"app": "bench"}},
                "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
                "status": {"phase": "Running"}}
    assert running_holdings([cpu, pending, done, stranger]) == {}
    assert set(running_holdings([ANN, ANN_BIG, RUN, cpu])) == {pod_claim_id(p["metadata"]["uid"]) for p in (ANN, ANN_BIG, RUN)}


def test_quotas_count_a_servers_gpus_under_the_name_the_hub_knows():
    """The label holds a slug ("ann-x-org---1a2b3c4d"); the annotation the name quotas compare with."""
    assert gpus_by_user([ANN, ANN_BIG, RUN]) == {"Ann@x.org": 3, "carl": 2}


def test_a_jobs_pods_carry_the_project_of_the_claim_as_a_servers_pod_does_and_none_without_one():
    assert "gpulab.dev/project" not in run_pod("r9", "carl", "u")["metadata"]["labels"]
    job = run_job(request(GPU2_P, project="vision"), KUBE, PROJECTS, [])
    assert job["spec"]["template"]["metadata"]["labels"]["gpulab.dev/project"] == "vision"


# The exporter's text as dcgm-exporter 3.x/4.x renders it (internal/pkg/rendermetrics): gpu, UUID,
# pci_bus_id, device, modelName, GPU_I_PROFILE and GPU_I_ID on a MIG instance, Hostname, its extra
# labels, then the pod mapping's container, namespace and pod. GPU 1 is allocated to no pod.
EXPOSITION = """\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a0",pci_bus_id="00000000:07:00.0",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15",container="notebook",namespace="gpulab",pod="jupyter-ann-x-org---1a2b3c4d"} 93
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-a1",pci_bus_id="00000000:0F:00.0",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15"} 100
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-a2",pci_bus_id="00000000:47:00.0",device="nvidia2",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15",container="runner",namespace="gpulab",pod="gpulab-run-r7-x7k2p"} 0
DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-a3",pci_bus_id="00000000:4E:00.0",device="nvidia3",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15",container="runner",namespace="gpulab",pod="gpulab-run-r7-x7k2p"} 4
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a0",pci_bus_id="00000000:07:00.0",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15",container="notebook",namespace="gpulab",pod="jupyter-ann-x-org---1a2b3c4d"} 30512
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-a1",pci_bus_id="00000000:0F:00.0",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15"} 70000
DCGM_FI_DEV_FB_USED{gpu="2",UUID="GPU-a2",pci_bus_id="00000000:47:00.0",device="nvidia2",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15",container="runner",namespace="gpulab",pod="gpulab-run-r7-x7k2p"} 1
DCGM_FI_DEV_FB_USED{gpu="3",UUID="GPU-a3",pci_bus_id="00000000:4E:00.0",device="nvidia3",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-a",DCGM_FI_DRIVER_VERSION="570.86.15",container="runner",namespace="gpulab",pod="gpulab-run-r7-x7k2p"} 9223372036854775794
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-b0",pci_bus_id="00000000:07:00.0",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="1g.10gb",GPU_I_ID="3",Hostname="gpu-node-b",DCGM_FI_DRIVER_VERSION="570.86.15",container="notebook",namespace="gpulab",pod="jupyter-bob"} 2048
# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-b0",pci_bus_id="00000000:07:00.0",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="1g.10gb",GPU_I_ID="3",Hostname="gpu-node-b",DCGM_FI_DRIVER_VERSION="570.86.15",container="notebook",namespace="gpulab",pod="jupyter-bob"} 0.412
"""


def test_dcgm_readings_are_attributed_to_the_pod_using_each_device():
    assert pod_readings(EXPOSITION) == {
        (NS, "jupyter-ann-x-org---1a2b3c4d"): {"GPU-a0": Reading(93, 30512)},
        (NS, "gpulab-run-r7-x7k2p"): {"GPU-a2": Reading(0, 1), "GPU-a3": Reading(4, None)},  # blank: no memory
        (NS, "jupyter-bob"): {"GPU-b0/3": Reading(41, 2048)},  # a MIG instance: the engine's activity
    }
    assert pod_readings("") == {}


def usage(sessions, clock) -> ClusterUsage:
    async def no_pods() -> list[dict]:
        return []

    return ClusterUsage(sessions, threshold=10, list_pods=no_pods, clock=clock)


def test_each_running_pod_is_one_interval_sampled_from_dcgm_and_ended_at_its_last_sighting(sessions):
    clock, readings = Clock(), pod_readings(EXPOSITION)
    sampler = usage(sessions, clock)
    sampler.record([ANN, RUN], readings)
    for _ in range(6):  # an hour: ann trains, carl's run holds two idle GPUs
        clock.now += 600
        sampler.record([ANN, RUN], readings)
    ann, run = intervals(sessions)
    assert (ann.owner, ann.purpose, ann.profile, ann.gpus, ann.cpus, ann.devices) == (
        "Ann@x.org", "server:Ann@x.org/", "a100", 1, 4.0, "GPU-a0")
    assert (ann.samples, ann.utilization_max, ann.memory_max_mb, ann.idle_gpu_seconds) == (6, 93, 30512, 0)
    assert (run.project, run.gpus, run.idle_gpu_seconds, run.measured_gpu_seconds) == ("vision", 2, 7200, 7200)
    clock.now += 600
    ended = {**RUN, "status": {"phase": "Succeeded"}}
    sampler.record([ANN, ended], readings)  # the run's pod ended: at its last sighting, an hour in
    clock.now += 1800
    sampler.record([], readings)  # ann's pod is gone (deleted between samples)
    ann, run = intervals(sessions)
    assert run.ended_at.replace(tzinfo=timezone.utc).timestamp() == START + 3600
    assert ann.ended_at.replace(tzinfo=timezone.utc).timestamp() == START + 4200
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    within = period("2026-11-01", None, now)
    by_user = {r.key: r for r in summarise([ann, run], within, "user", now)}
    assert (by_user["carl"].gpu_hours, by_user["carl"].idle_share, by_user["carl"].run_hours) == (2.0, 1.0, 1.0)
    assert by_user["Ann@x.org"].gpu_hours == pytest.approx(70 / 60) and by_user["Ann@x.org"].idle_share == 0.0
    assert by_user["Ann@x.org"].cpu_hours == pytest.approx(4 * 70 / 60)
    assert {r.key: r.gpu_hours for r in summarise([ann, run], within, "project", now)} == {
        "vision": 2.0, "(none)": pytest.approx(70 / 60)}


def test_a_restarted_service_continues_the_open_intervals_instead_of_doubling_them(sessions):
    clock = Clock()
    usage(sessions, clock).record([ANN, RUN], {})
    clock.now += 600
    usage(sessions, clock).record([ANN, RUN], {})  # a new process, the same database
    clock.now += 600
    again = usage(sessions, clock)
    again.record([ANN, RUN, ANN_BIG], {})
    rows = intervals(sessions)
    assert sorted(r.purpose for r in rows) == ["run:r7", "server:Ann@x.org/", "server:Ann@x.org/big"]
    assert all(r.ended_at is None for r in rows)
    assert {r.purpose: r.seen_at.replace(tzinfo=timezone.utc).timestamp() - START for r in rows} == {
        "server:Ann@x.org/": 1200, "run:r7": 1200, "server:Ann@x.org/big": 1200}
    assert [r.samples for r in rows] == [0, 0, 0]  # no DCGM: allocation only


def test_without_dcgm_the_live_devices_are_the_allocation_and_carry_no_reading():
    holdings = running_holdings([ANN_BIG, RUN])
    held = held_devices(holdings, {(NS, "gpulab-run-r7-x7k2p"): {"GPU-a2": Reading(0, 1), "GPU-a3": Reading(4, None)}})
    assert [(h.uuid, h.owner, h.purpose, h.reading) for h in held] == [
        ("jupyter-ann-x-org---1a2b3c4d--big/0", "Ann@x.org", "server:Ann@x.org/big", Reading(None, None)),
        ("jupyter-ann-x-org---1a2b3c4d--big/1", "Ann@x.org", "server:Ann@x.org/big", Reading(None, None)),
        ("GPU-a2", "carl", "run:r7", Reading(0, 1)), ("GPU-a3", "carl", "run:r7", Reading(4, None))]


def test_a_sample_lists_the_pods_reads_dcgm_and_records_them(sessions):
    clock = Clock()

    async def pods() -> list[dict]:
        return [ANN, BOB_MIG]

    async def dcgm():
        return pod_readings(EXPOSITION)

    sampler = ClusterUsage(sessions, threshold=10, list_pods=pods, read_dcgm=dcgm, clock=clock)
    held = asyncio.run(sampler.sample_once())
    assert {(h.uuid, h.owner, h.reading.utilization) for h in held} == {("GPU-a0", "Ann@x.org", 93),
                                                                         ("GPU-b0/3", "bob", 41)}
    assert sampler.latest == held


def test_budgets_read_what_the_pods_spent_this_month(sessions):
    clock = Clock()
    sampler = usage(sessions, clock)
    sampler.record([ANN_BIG, RUN], {})
    clock.now += 5400
    sampler.record([ANN_BIG, RUN], {})
    spent = spent_reader(sessions, lambda: datetime.fromtimestamp(clock.now, timezone.utc))()
    assert spent == Spent(datetime(2026, 11, 1, tzinfo=timezone.utc), {"Ann@x.org": 3.0, "carl": 3.0},
                           {"vision": 3.0, "nlp": 3.0})


def test_the_page_api_and_cli_say_when_utilisation_is_not_measured(sessions):
    core = UsageCore(sessions, 10, list, clock=lambda: datetime(2026, 11, 26, tzinfo=timezone.utc), measured_by="")
    report = core.report(Asker("root", True), "2026-11-01", None, "user")
    assert report["utilization_note"].startswith("utilisation not measured on this cluster: allocation only")
    assert report["utilization_measured_by"] == ""
    assert table(report).splitlines()[1] == report["utilization_note"]
    measured = UsageCore(sessions, 10, list, measured_by="DCGM exporter").report(Asker("root", True), None, None, "user")
    assert measured["utilization_note"] == "" and measured["utilization_measured_by"] == "DCGM exporter"
    page = (Path(__file__).resolve().parents[4] / "extensions/usage/templates/usage.html").read_text()
    assert 'id="utilization-note"' in page and "report.utilization_note" in page


def test_on_kubernetes_the_usage_service_gets_the_namespace_and_the_dcgm_exporter():
    values = typed_settings({"spawner": {"backend": "kubernetes", "kubernetes": {"namespace": "lab"}},
                             "database": {"url": "postgresql://db/gpulab"},
                             "usage": {"dcgm_exporter_url": "http://dcgm.gpu-operator.svc:9400/metrics"}})
    [service] = [s for s in apply_config(values, Config()).JupyterHub.services if s["name"] == "usage"]
    settings = json.loads(service["environment"]["GPULAB_SERVICE_SETTINGS"])
    assert (settings["backend"], settings["namespace"], settings["dcgm_exporter_url"]) == (
        "kubernetes", "lab", "http://dcgm.gpu-operator.svc:9400/metrics")
