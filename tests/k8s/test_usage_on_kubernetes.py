"""GPU usage and budgets on the Kubernetes backend, end to end without a cluster or a GPU.

A real hub (gpulab's KubeSpawner, its usage service sampling every second, its scheduler)
talks to kmock's emulated Kubernetes API (tests/k8s/fake_cluster.py) and reads a stand-in DCGM
exporter over HTTP (tests/k8s/fake_dcgm.py) in the exporter's format. Servers are spawned
through the hub; a scheduled run's pod is made as the scheduler's Job controller would make it
(labels and annotations of job_manifests), so its project and GPU count are the test's. The
hours are checked against the intervals the service wrote (no timing asserts: how long a pod
ran is whatever it was).

Not covered: the NVIDIA device plugin and DCGM (GPUs are what the nodes declare, readings what
the test sets), one exporter per node (one stands for all), a real API server's watch and
deletion semantics (kmock's), PostgreSQL (the hub's SQLite database is the one the services
share here), and a restart of the usage service (tests/unit/extensions/usage/test_usage_cluster.py).
"""

from __future__ import annotations

import json
import urllib.request
from datetime import timezone

import pytest
import requests

from gpulab.compute.usage import UsageInterval
from gpulab.db import make_engine, make_session_factory
from gpulab.hub_config.client import ClientError, HubClient
from tests.k8s.fake_dcgm import Device, FakeDcgmExporter
from tests.k8s.test_scheduler_jobs import run_now, wait_status
from tests.support.cluster import NAMESPACE
from tests.support.gpu_hub import catalog
from tests.support.hub import wait_for
from tests.support.scheduler_runs import notebook


SPENDER_BUDGET = 0.0005  # GPU-hours a month: under two GPU-seconds


@pytest.fixture(scope="module")
def dcgm():
    with FakeDcgmExporter() as exporter:
        yield exporter


@pytest.fixture(scope="module")
def hub(module_hub_factory, cluster, dcgm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kube-usage-hub")
    return module_hub_factory.start({
        "spawner": {"backend": "kubernetes", "kubernetes": {"namespace": NAMESPACE}},
        "auth": {"admin_users": ["usage-admin"]},
        "profiles": [
            {"id": "cpu", "display_name": "CPU", "default": True},
            {"id": "a100", "display_name": "1 A100", "gpu": {"count": 1, "models": ["A100"]}, "cpu": {"limit": 2}},
        ],
        "environments": {"catalog": str(catalog(folder))},
        "usage": {"sample_interval": 1, "dcgm_exporter_url": dcgm.url},
        "culling": {"gpu_utilization_threshold": 10},
        "quotas": {"users": {"spender": {"gpu_hours_per_month": SPENDER_BUDGET}}},
    }, name="kube-usage", extra_env={"KUBECONFIG": str(cluster.kubeconfig(folder))})


@pytest.fixture(scope="module")
def admin(hub) -> str:
    hub.create_user("usage-admin", admin=True)
    return hub.user_token("usage-admin")


def usage_api(hub, token: str, path: str, **params) -> dict:
    answer = requests.get(f"{hub.url}services/usage/api/{path}", params=params,
                          headers={"Authorization": f"token {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def send(cluster, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(cluster.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def run_pod(run_id: str, owner: str, project: str, gpus: int) -> dict:
    """A scheduled run's pod as the Job controller makes it from job_manifests.run_job's template."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": f"gpulab-run-{run_id}-k4x9q", "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/part-of": "gpulab", "app.kubernetes.io/component": "scheduled-run",
                   "gpulab.dev/run": run_id, "gpulab.dev/profile": "a100-pair", "gpulab.dev/project": project,
                   "job-name": f"gpulab-run-{run_id}"},
        "annotations": {"gpulab.dev/owner": owner}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "runner", "image": "test/torch:cuda12", "command": ["sleep", "600"],
            "resources": {"limits": {"cpu": "4", "nvidia.com/gpu": str(gpus)},
                          "requests": {"nvidia.com/gpu": str(gpus)}}}]}}


def intervals(hub) -> list[UsageInterval]:
    engine = make_engine(f"sqlite:///{hub.data_dir / 'state' / 'gpulab.sqlite'}")
    try:
        with make_session_factory(engine)() as session:
            rows = list(session.query(UsageInterval).order_by(UsageInterval.id))
            for row in rows:
                session.expunge(row)
            return rows
    finally:
        engine.dispose()


def gpu_hours(rows: list[UsageInterval]) -> float:
    return sum((r.ended_at - r.started_at).total_seconds() * r.gpus for r in rows) / 3600


def test_servers_and_runs_pods_are_accounted_with_dcgms_readings(hub, cluster, dcgm, admin):
    hub.create_user("ann")
    hub.spawn("ann", options={"profile": "a100"})
    server = cluster.pod_of("ann")["metadata"]["name"]
    send(cluster, "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", run_pod("r-usage-1", "carl", "vision", 2))
    run = "gpulab-run-r-usage-1-k4x9q"
    dcgm.devices = [Device("GPU-a0", 0, "gpu-node-a", 95, 30512, NAMESPACE, server, "notebook"),
                    Device("GPU-a1", 1, "gpu-node-a", 100, 70000),  # busy, but no pod of gpulab's holds it
                    Device("GPU-b0", 0, "gpu-node-b", 0, 1, NAMESPACE, run, "runner"),
                    Device("GPU-b1", 1, "gpu-node-b", 3, 1, NAMESPACE, run, "runner")]

    def both_read():
        devices = usage_api(hub, admin, "live")["devices"]
        return len(devices) == 3 and all(d["utilization_percent"] is not None for d in devices) and devices

    live = {d["device"]: d for d in wait_for(both_read, 60, "the usage service to read both pods' GPUs from DCGM")}
    assert (live["GPU-a0"]["owner"], live["GPU-a0"]["purpose"], live["GPU-a0"]["utilization_percent"],
            live["GPU-a0"]["memory_used_mb"]) == ("ann", "server:ann/", 95, 30512)
    assert {(d["owner"], d["purpose"], d["project"]) for k, d in live.items() if k != "GPU-a0"} == {
        ("carl", "run:r-usage-1", "vision")}
    assert usage_api(hub, admin, "usage")["utilization_note"] == ""  # DCGM measures it here

    wait_for(lambda: all(r.samples >= 3 for r in intervals(hub)), 60, "a few samples of both pods")
    send(cluster, "DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{run}")
    hub.stop_server("ann")
    wait_for(lambda: not usage_api(hub, admin, "live")["devices"], 60, "both pods to be seen gone")

    rows = intervals(hub)
    assert sorted((r.owner, r.purpose, r.project, r.profile, r.gpus, r.cpus) for r in rows) == [
        ("ann", "server:ann/", "", "a100", 1, 2.0), ("carl", "run:r-usage-1", "vision", "a100-pair", 2, 4.0)]
    assert all(r.ended_at is not None and r.ended_at == r.seen_at for r in rows)  # ended at the last sighting
    ann = [r for r in rows if r.owner == "ann"]
    carl = [r for r in rows if r.owner == "carl"]
    assert carl[0].devices == "GPU-b0,GPU-b1" and carl[0].idle_gpu_seconds == carl[0].measured_gpu_seconds > 0
    assert ann[0].idle_gpu_seconds == 0 and ann[0].measured_gpu_seconds > 0 and ann[0].utilization_max == 95

    by_user = {r["key"]: r for r in usage_api(hub, admin, "usage", by="user")["rows"]}
    assert set(by_user) == {"ann", "carl"}
    assert by_user["ann"]["gpu_hours"] == pytest.approx(gpu_hours(ann), abs=1e-4)
    assert by_user["carl"]["gpu_hours"] == pytest.approx(gpu_hours(carl), abs=1e-4)
    assert by_user["carl"]["gpu_hours"] == pytest.approx(2 * by_user["carl"]["run_hours"], abs=2e-4)
    assert (by_user["ann"]["idle_share"], by_user["carl"]["idle_share"]) == (0.0, 1.0)  # busy 95%; idle at 0-3%
    by_project = {r["key"]: r["gpu_hours"] for r in usage_api(hub, admin, "usage", by="project")["rows"]}
    assert by_project == {"vision": pytest.approx(gpu_hours(carl), abs=1e-4),
                          "(none)": pytest.approx(gpu_hours(ann), abs=1e-4)}
    assert all(r.started_at.replace(tzinfo=timezone.utc) < r.ended_at.replace(tzinfo=timezone.utc) for r in rows)
    log = hub.log_tail(100000)
    assert "usage: sampling every 1s" in log and "could not sample GPU usage" not in log


def test_a_spent_budget_refuses_a_gpu_server_and_holds_a_gpu_run_on_kubernetes(hub, cluster, admin):
    hub.create_user("spender")
    hub.spawn("spender", options={"profile": "a100"})  # nothing spent yet this month
    wait_for(lambda: any(r["key"] == "spender" and r["gpu_hours"] > 2 * SPENDER_BUDGET
                         for r in usage_api(hub, admin, "usage")["rows"]), 60, "spender's pod to spend the budget")
    hub.stop_server("spender")
    with pytest.raises(ClientError) as refused:
        hub.spawn("spender", options={"profile": "a100"})
    assert refused.value.status == 403
    assert "Cannot start 1 A100: over budget: spender used" in refused.value.message
    assert f"of {SPENDER_BUDGET:g} GPU-hours this month; none left until" in refused.value.message
    assert cluster.pod_of("spender") is None

    client = HubClient(hub.url, hub.user_token("spender"))
    waiting = wait_status(client, run_now(client, notebook("print(1)"), profile="a100")["id"], ("WAITING",), 60)
    assert "over budget: spender used" in waiting["message"], waiting
    hub.spawn("spender", options={"profile": "cpu"})  # a budget of GPU-hours leaves CPU servers alone
    hub.stop_server("spender")
