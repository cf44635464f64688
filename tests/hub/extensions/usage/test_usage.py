"""GPU usage end to end: a real hub, a real server holding a declared GPU, the usage service.

No real GPU exists here: utilisation and memory come from the emulated NVML of
tests/support/declared_gpus.py, which reads a file this test writes. The hours are checked
against the period the test itself saw the server hold its GPU (no timing asserts: the
bounds are what the test measured around the spawn and the stop).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gpulab.compute.usage import UsageInterval
from gpulab.db import make_engine, make_session_factory
from gpulab.hub_config.client import ClientError
from tests.support.declared_gpus import write_readings
from tests.support.hub import managed_service_process, process_uids, wait_for
from tests.support.usage_hub import GPU, SAVER_BUDGET, VISION_BUDGET, live_reading, start_usage_hub, usage_get


BAD_REQUESTS = [
    ({"since": "last week"}, "since='last week' is not a date"),
    ({"since": "2026-11-10", "until": "2026-11-01"}, "must not be before"),
    ({"by": "colour"}, "by='colour' is not one of user, project, profile, purpose"),
    ({"format": "xml"}, "format='xml' is not json or csv"),
]


@pytest.fixture
def hub(hub_factory, hubs_root):
    return start_usage_hub(hub_factory, hubs_root)


def test_a_gpu_held_for_a_measured_period_shows_in_the_api_csv_and_metrics(hub):
    hub.create_user("gpu-admin", admin=True)
    admin = hub.user_token("gpu-admin")
    for name in ("alice", "bob"):
        hub.create_user(name)
    alice, bob = hub.user_token("alice"), hub.user_token("bob")

    if os.geteuid() == 0:  # a root hub runs the service as the account that owns gpulab's database, not root
        usage = wait_for(lambda: managed_service_process(hub, "gpulab.extensions.usage.service"), 30, "the usage service")
        scheduler = wait_for(lambda: managed_service_process(hub, "gpulab.extensions.scheduler.service"), 30,
                             "the scheduler service")
        assert process_uids(usage.pid) == process_uids(scheduler.pid) and process_uids(usage.pid)[0] != "0"

    before_spawn = time.time()
    hub.spawn("alice", options={"profile": "gpu"})
    ready = time.time()
    # the sampler attributes the emulated reading to alice's server
    held = wait_for(lambda: (r := live_reading(hub, admin)) and r["utilization_percent"] == 90 and r, 60,
                    "the usage service to sample alice's GPU at 90%")
    assert (held["device"], held["owner"], held["purpose"], held["memory_used_mb"]) == (GPU, "alice", "server:alice/", 1000)

    metrics = usage_get(hub, admin, "metrics")
    assert metrics.status_code == 200
    samples = {(s.name, s.labels.get("user"), s.labels.get("server")): s.value
               for family in text_string_to_metric_families(metrics.text) for s in family.samples}
    assert samples[("gpulab_gpu_utilization_percent", "alice", "alice/")] == 90
    assert samples[("gpulab_gpu_memory_used_bytes", "alice", "alice/")] == 1000 * 2**20
    assert samples[("gpulab_gpus_allocated", "alice", None)] == 1
    assert usage_get(hub, alice, "metrics").status_code == 403

    write_readings(hub.readings, {GPU: {"utilization": 0, "memory_used_mb": 10}})  # the notebook is left open, idle
    wait_for(lambda: (r := live_reading(hub, admin)) and r["utilization_percent"] == 0, 60,
             "the usage service to sample the idle GPU")
    time.sleep(2)  # a few idle samples
    before_stop = time.time()
    hub.stop_server("alice")
    # released: the sampler sees no holder (the hub may answer "stopped" a moment before the release)
    wait_for(lambda: live_reading(hub, admin) is None, 30, "alice's GPU to be released")
    stopped = time.time()

    report = usage_get(hub, admin, "api/usage", by="user")
    assert report.status_code == 200, report.text
    rows = {r["key"]: r for r in report.json()["rows"]}
    hours = rows["alice"]["gpu_hours"]
    # held from the claim (after the spawn was asked for) to the release (before the stop returned)
    assert (before_stop - ready) / 3600 - 1e-4 <= hours <= (stopped - before_spawn) / 3600 + 1e-4
    assert rows["alice"]["server_hours"] == pytest.approx(hours, abs=1e-4)
    assert rows["alice"]["cpu_hours"] == pytest.approx(2 * hours, abs=2e-4)
    assert 0 < rows["alice"]["idle_share"] < 1  # busy at first, idle later
    assert list(rows) == ["alice"]

    by_project = {r["key"]: r for r in usage_get(hub, admin, "api/usage", by="project").json()["rows"]}
    assert by_project["(none)"]["gpu_hours"] == pytest.approx(hours, abs=1e-4)  # a server names no project

    # an ordinary user sees only their own
    assert [r["key"] for r in usage_get(hub, alice, "api/usage").json()["rows"]] == ["alice"]
    assert usage_get(hub, bob, "api/usage").json()["rows"] == []

    table = usage_get(hub, admin, "api/usage", by="user", format="csv")
    assert table.headers["Content-Type"].startswith("text/csv")
    [line] = list(csv.DictReader(io.StringIO(table.text)))
    assert (line["user"], float(line["gpu_hours"])) == ("alice", pytest.approx(hours, abs=1e-4))

    for params, message in BAD_REQUESTS:  # a client's mistake is a 400 with the reason
        answer = usage_get(hub, alice, "api/usage", **params)
        assert (answer.status_code, message in json.loads(answer.text)["message"]) == (400, True), (params, answer.text)

    # the CLI: `gpulab usage --since <first of the month> --by project`, and a bad date
    first = datetime.now(timezone.utc).strftime("%Y-%m-01")
    shown = gpulab(hub, admin, "usage", "--since", first, "--by", "project")
    assert shown.returncode == 0, shown.stderr
    assert f"{first} to" in shown.stdout and "(none)" in shown.stdout and f"{hours:.2f}" in shown.stdout
    as_csv = gpulab(hub, alice, "usage", "--csv")
    assert as_csv.stdout.splitlines()[1].startswith("alice,")
    refused = gpulab(hub, alice, "usage", "--since", "2026-02-30")
    assert (refused.returncode, "since='2026-02-30' is not a date" in refused.stderr) == (2, True)


def gpulab(hub, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "gpulab.hub_config.cli", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def used_earlier_this_month(hub, owner: str, hours: float, project: str = "") -> None:
    """A finished interval of one GPU for `owner`, written into the hub's usage ledger as if
    they had held it earlier this month (so the budget's state does not depend on timing)."""
    engine = make_engine(f"sqlite:///{hub.data_dir / 'state' / 'gpulab.sqlite'}")
    now = datetime.now(timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with make_session_factory(engine).begin() as session:
        session.add(UsageInterval(claim_id=f"earlier-{owner}-{hours}", owner=owner, purpose=f"server:{owner}/", profile="gpu",
                                  project=project, devices="GPU-earlier", gpus=1, cpus=0.0, started_at=start,
                                  seen_at=start + timedelta(hours=hours), ended_at=start + timedelta(hours=hours)))
    engine.dispose()


def test_a_budget_warns_from_80_percent_and_refuses_once_spent(hub):
    if datetime.now(timezone.utc).day == 1 and datetime.now(timezone.utc).hour < 2:
        pytest.skip("the seeded hours lie earlier this month: not yet there in its first hours")
    hub.create_user("saver")
    used_earlier_this_month(hub, "saver", 0.9 * SAVER_BUDGET)
    hub.spawn("saver", options={"profile": "gpu"})  # granted, with what is left
    assert "GPU budget: saver has used 0.90 of 1 GPU-hours this month (90%); 0.10 left" in hub.log_tail(3000)
    hub.stop_server("saver")
    used_earlier_this_month(hub, "saver", 0.1 * SAVER_BUDGET)
    with pytest.raises(ClientError) as refused:
        hub.spawn("saver", options={"profile": "gpu"})
    assert refused.value.status == 403
    assert "over budget: saver used 1.00 of 1 GPU-hours this month; none left until" in refused.value.message
    hub.spawn("saver", options={"profile": "cpu"})  # a budget of GPU-hours leaves CPU servers alone


def test_a_server_that_names_its_project_counts_towards_the_projects_hours_and_budget(hub):
    """A server's `project` option: only an editor may name it; its GPU-hours are the project's
    in the usage report, and the project's budget refuses the next server once spent."""
    if datetime.now(timezone.utc).day == 1 and datetime.now(timezone.utc).hour < 2:
        pytest.skip("the seeded hours lie earlier this month: not yet there in its first hours")
    hub.create_user("gpu-admin", admin=True)
    for name in ("lead", "ed", "viv"):
        hub.create_user(name)
    admin, lead = hub.user_token("gpu-admin"), hub.user_token("lead")
    projects = f"{hub.url}services/projects/api/projects"
    made = requests.post(projects, json={"name": "vision"}, headers={"Authorization": f"token {lead}"}, timeout=30)
    assert made.status_code == 201, made.text
    for name, role in (("ed", "editor"), ("viv", "viewer")):
        added = requests.post(f"{projects}/vision/members", json={"name": name, "role": role},
                              headers={"Authorization": f"token {lead}"}, timeout=30)
        assert added.status_code in (200, 201), added.text

    for who, needle in (("viv", "viewers of project 'vision' cannot start servers for it"),
                        ("gpu-admin", "gpu-admin is not an editor of project 'vision'")):
        with pytest.raises(ClientError) as refused:
            hub.spawn(who, options={"profile": "gpu", "project": "vision"})
        assert (refused.value.status, needle in refused.value.message) == (403, True), refused.value.message

    hub.spawn("ed", options={"profile": "gpu", "project": "vision"})
    held = wait_for(lambda: live_reading(hub, admin), 60, "the usage service to sample ed's GPU")
    assert (held["owner"], held["project"]) == ("ed", "vision")
    hub.stop_server("ed")
    wait_for(lambda: live_reading(hub, admin) is None, 30, "ed's GPU to be released")
    rows = {r["key"]: r for r in usage_get(hub, admin, "api/usage", by="project").json()["rows"]}
    assert list(rows) == ["vision"] and rows["vision"]["gpu_hours"] > 0
    # the project's maintainer (its team lead) sees its hours, by user too; the viewer only their own
    led = usage_get(hub, lead, "api/usage", by="user").json()
    assert (led["scope"], [r["key"] for r in led["rows"]]) == ("lead and project vision", ["ed"])
    assert usage_get(hub, hub.user_token("viv"), "api/usage", by="project").json()["rows"] == []

    used_earlier_this_month(hub, "lead", VISION_BUDGET, project="vision")  # the project's budget is spent
    with pytest.raises(ClientError) as refused:
        hub.spawn("ed", options={"profile": "gpu", "project": "vision"})
    assert refused.value.status == 403 and "over budget" in refused.value.message and "vision" in refused.value.message
    hub.spawn("ed", options={"profile": "gpu"})  # ed's own hours are not the project's
