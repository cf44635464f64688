"""The usage ledger on a real SQLite file, driven by a controllable clock and an emulated NVML
(no real GPU exists here: the inventory below reports whatever the test sets)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gpulab.compute.inventory import Device
from gpulab.compute.ledger import Ledger
from gpulab.compute.profiles import GpuRequest
from gpulab.compute.usage import UsageInterval
from gpulab.compute.usage_report import BadPeriod, as_csv, period, summarise, visible_to
from gpulab.compute.usage_sampler import UsageSampler
from tests.support.usage_ledger import START, Clock, intervals, migrated_sessions


DEVICES = [Device(f"GPU-{i}", "NVIDIA A100", 81920, "570.86.15", str(i)) for i in range(4)]


class EmulatedNvml:
    """Reports what the test sets; no real GPU."""

    def __init__(self):
        self.percent: dict[str, int] = {}
        self.memory: dict[str, int] = {}

    def utilization(self, uuids):
        return {u: self.percent[u] for u in uuids if u in self.percent}

    def memory_used(self, uuids):
        return {u: self.memory[u] for u in uuids if u in self.memory}


@pytest.fixture
def sessions(tmp_path):
    return migrated_sessions(tmp_path)


def test_a_claim_opens_an_interval_and_its_release_closes_it(sessions):
    clock = Clock()
    ledger = Ledger(sessions, clock=clock)
    claim = ledger.claim("alice", "server:alice/gpu", GpuRequest(2), DEVICES, profile="gpu-2", cpus=8)
    clock.now += 2 * 3600
    ledger.release(claim.claim_id)
    [row] = intervals(sessions)
    assert (row.owner, row.profile, row.kind, row.gpus, row.devices) == ("alice", "gpu-2", "server", 2, "GPU-0,GPU-1")
    within = period("2026-11-01", "2026-11-30", datetime.fromtimestamp(clock.now, timezone.utc))
    [alice] = summarise([row], within, "user", datetime.fromtimestamp(clock.now, timezone.utc))
    assert (alice.gpu_hours, alice.cpu_hours, alice.server_hours) == (4.0, 16.0, 2.0)


def test_samples_attribute_utilisation_and_idle_time_to_the_holder(sessions):
    clock, nvml = Clock(), EmulatedNvml()
    ledger = Ledger(sessions, clock=clock, alive=lambda pid, ticks: True)
    for owner, purpose in (("alice", "server:alice/"), ("bob", "run:7")):
        ledger.attach(ledger.claim(owner, purpose, GpuRequest(1), DEVICES, profile="gpu").claim_id, 1, None)
    sampler = UsageSampler(sessions, nvml, threshold=10, clock=clock, ledger=ledger)
    nvml.percent = {"GPU-0": 95, "GPU-1": 0}
    nvml.memory = {"GPU-0": 30000, "GPU-1": 500}
    for _ in range(6):  # one hour: alice trains, bob's run holds an idle GPU
        clock.now += 600
        held = sampler.sample_once()
    assert {(h.owner, h.reading.utilization) for h in held} == {("alice", 95), ("bob", 0)}
    alice, bob = intervals(sessions)
    assert (alice.samples, alice.utilization_max, alice.memory_max_mb, alice.idle_gpu_seconds) == (6, 95, 30000, 0)
    assert (bob.idle_gpu_seconds, bob.measured_gpu_seconds) == (3600, 3600)
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    rows = {r.key: r for r in summarise([alice, bob], period("2026-11-01", None, now), "user", now)}
    assert rows["bob"].idle_share == 1.0 and rows["bob"].run_hours == 1.0
    assert rows["alice"].idle_share == 0.0 and rows["alice"].gpu_hours == 1.0


def test_a_holder_that_dies_unnoticed_loses_at_most_one_sampling_interval(sessions):
    clock, nvml = Clock(), EmulatedNvml()
    alive = {"yes": True}
    ledger = Ledger(sessions, clock=clock, alive=lambda pid, ticks: alive["yes"])
    claim = ledger.claim("alice", "server:alice/", GpuRequest(1), DEVICES)
    ledger.attach(claim.claim_id, 12345, 1)
    sampler = UsageSampler(sessions, nvml, threshold=10, clock=clock, ledger=ledger)
    for _ in range(3):
        clock.now += 5
        sampler.sample_once()
    clock.now += 3  # the server (and the hub) die between two samples
    alive["yes"] = False
    clock.now += 3600  # noticed only an hour later
    sampler.sample_once()
    [row] = intervals(sessions)
    held = (row.ended_at.replace(tzinfo=timezone.utc).timestamp() - START)
    assert held == 15  # the last sighting, not the hour after: 3 s lost, under one interval of 5 s


def test_retention_prunes_old_intervals_only(sessions):
    clock, nvml = Clock(), EmulatedNvml()
    ledger = Ledger(sessions, clock=clock)
    ledger.release(ledger.claim("alice", "run:1", GpuRequest(1), DEVICES).claim_id)
    clock.now += 40 * 86400
    ledger.claim("bob", "run:2", GpuRequest(1), DEVICES)
    UsageSampler(sessions, nvml, threshold=10, retention_days=30, clock=clock, ledger=ledger).sample_once()
    assert [r.owner for r in intervals(sessions)] == ["bob"]


def test_reports_cut_intervals_at_the_period_and_hide_others_from_users(sessions):
    clock = Clock()
    ledger = Ledger(sessions, clock=clock)
    ledger.claim("alice", "server:alice/", GpuRequest(1), DEVICES, profile="gpu")
    clock.now += 48 * 3600  # still open two days later
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    rows = intervals(sessions) + [UsageInterval(owner="bob", purpose="run:3", profile="gpu", project="vision",
                                                gpus=1, cpus=0.0, started_at=now, ended_at=now,
                                                measured_gpu_seconds=0.0, idle_gpu_seconds=0.0)]
    [day] = summarise(rows, period("2026-11-11", "2026-11-11", now), "user", now)
    assert (day.key, day.gpu_hours) == ("alice", 24.0)
    assert [r.owner for r in visible_to(rows, "alice", admin=False)] == ["alice"]
    assert len(visible_to(rows, "carol", admin=True)) == 2
    by_project = summarise(rows, period("2026-11-01", None, now), "project", now)
    assert as_csv(by_project, "project").splitlines()[0] == \
        "project,gpu_hours,idle_gpu_hours,idle_share,cpu_hours,server_hours,run_hours"


@pytest.mark.parametrize("since, until, message", [
    ("yesterday", None, "since='yesterday' is not a date"),
    ("2026-11-10", "2026-11-01", "must not be before"),
    ("2026-13-01", None, "is not a date"),
])
def test_bad_periods_say_what_is_wrong(since, until, message):
    with pytest.raises(BadPeriod, match=message):
        period(since, until, datetime(2026, 11, 26, tzinfo=timezone.utc))


def test_a_team_lead_sees_their_projects_intervals_and_their_own():
    start = datetime(2026, 11, 3, 9, tzinfo=timezone.utc)

    def held(owner, project):
        return UsageInterval(claim_id=f"{owner}-{project}", owner=owner, purpose=f"server:{owner}/", profile="gpu",
                             project=project, devices="GPU-1", gpus=1, cpus=0.0, started_at=start, seen_at=start)

    rows = [held("lead", ""), held("ed", "vision"), held("ed", ""), held("nia", "audio")]
    seen = visible_to(rows, "lead", admin=False, led_projects=frozenset({"vision"}))
    assert [(r.owner, r.project) for r in seen] == [("lead", ""), ("ed", "vision")]
