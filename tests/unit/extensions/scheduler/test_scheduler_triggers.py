"""Exactly one run per slot: across scheduler restarts, concurrent scheduler processes, and downtime.

Real SQLite, real SchedulerCore and Dispatcher; a replaceable clock; nothing is executed
(only the trigger step runs), and users come from a fixed directory.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import select

from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade
from gpulab.extensions.scheduler.core import RunStorage, SchedulerCore, Who
from gpulab.extensions.scheduler.dispatcher import Dispatcher
from gpulab.extensions.scheduler.models import Run
from gpulab.extensions.scheduler.schemas import CreateRun, CreateSchedule, UpdateSchedule
from gpulab.hub_config.settings import complete
from tests.support.scheduler_clock import T0, Clock, FixedDirectory


def scheduler_settings(policy: str) -> dict:
    values = complete({"scheduler": {"missed_slots": policy, "prewarm_seconds": 0, "missed_slot_grace_seconds": 30}},
                      Path("/"))
    return {key: values[key] for key in ("profiles", "environments", "quotas", "scheduler")}


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    return url


def scheduler(url, clock, tmp_path, policy="run_once") -> Dispatcher:
    """One scheduler process: its own engine, core and dispatcher over the shared database."""
    core = SchedulerCore(make_session_factory(make_engine(url)), scheduler_settings(policy), FixedDirectory(),
                         RunStorage(tmp_path / "runs"), clock=clock)
    return Dispatcher(core, executor=None, notifier=None, log=logging.getLogger("test"), runner_url="http://127.0.0.1/runner/")


def every_minute(dispatcher: Dispatcher) -> str:
    nb = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])))
    return dispatcher.core.create_schedule(Who("ann"), CreateSchedule(name="m", notebook=nb, cron="* * * * *")).id


def slots(url) -> list[tuple[int, int]]:
    with make_session_factory(make_engine(url))() as session:
        return sorted((r.slot.minute, r.attempt) for r in session.scalars(select(Run)))


def test_two_scheduler_processes_create_each_slot_once(url, tmp_path):
    clock = Clock()
    first, second = scheduler(url, clock, tmp_path), scheduler(url, clock, tmp_path)
    every_minute(first)
    for minute in range(1, 4):
        clock.now = T0 + timedelta(minutes=minute)
        first.trigger(clock.now)
        second.trigger(clock.now)
    assert slots(url) == [(1, 1), (2, 1), (3, 1)]


def test_a_restart_between_slots_neither_duplicates_nor_misses(url, tmp_path):
    clock = Clock()
    before = scheduler(url, clock, tmp_path)
    every_minute(before)
    clock.now = T0 + timedelta(minutes=1)
    before.trigger(clock.now)
    after = scheduler(url, clock, tmp_path)  # a fresh process: nothing in memory
    after.trigger(clock.now)
    clock.now = T0 + timedelta(minutes=2)
    after.trigger(clock.now)
    assert slots(url) == [(1, 1), (2, 1)]


@pytest.mark.parametrize("policy, back_at, expected", [
    ("run_once", 40, [(6, 1)]),  # back at 12:06:10: 12:01-12:05 missed, 12:06 just passed: one run in all
    ("skip", 40, [(6, 1)]),  # 12:06 is 10 s late (within the grace), not missed
    ("run_once", 70, [(6, 1)]),  # back at 12:06:40: every slot missed; the latest runs once
    ("skip", 70, []),
])
def test_slots_missed_while_down_follow_the_policy(url, tmp_path, policy, back_at, expected):
    clock = Clock()
    every_minute(scheduler(url, clock, tmp_path, policy))
    clock.now = T0 + timedelta(minutes=5, seconds=back_at)
    scheduler(url, clock, tmp_path, policy).trigger(clock.now)
    assert slots(url) == expected


def store_unchecked_schedule(dispatcher: Dispatcher, cron_expression: str) -> str:
    """A row as an older release (or a hand edit) could have stored it, bypassing validation."""
    from sqlalchemy import update

    from gpulab.extensions.scheduler.models import Schedule

    schedule_id = every_minute(dispatcher)
    with dispatcher.core.sessions.begin() as session:
        session.execute(update(Schedule).where(Schedule.id == schedule_id).values(cron=cron_expression))
    return schedule_id


def test_a_schedule_that_never_fires_is_refused_and_a_stored_one_stops_only_itself(url, tmp_path):
    from gpulab.hub_config.services.errors import Invalid

    clock = Clock()
    dispatcher = scheduler(url, clock, tmp_path)
    nb = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])))
    with pytest.raises(Invalid, match=r"cron: '0 0 31 2 \*' never fires"):
        dispatcher.core.create_schedule(Who("ann"), CreateSchedule(name="never", notebook=nb, cron="0 0 31 2 *"))
    good = every_minute(dispatcher)
    with pytest.raises(Invalid, match="never fires"):
        dispatcher.core.update_schedule(Who("ann"), good, UpdateSchedule(cron="0 0 30 2 *"))
    bad = store_unchecked_schedule(dispatcher, "0 0 31 2 *")
    clock.now = T0 + timedelta(minutes=1)
    assert 0 <= dispatcher.sleep_seconds() <= 1  # the loop's sleep computation survives the bad row
    dispatcher.trigger(clock.now)
    assert slots(url) == [(1, 1)]  # the good schedule ran its slot
    listed = {s.id: s for s in dispatcher.core.list_schedules(Who("ann"))}
    assert "never fires" in listed[bad].last_error and listed[bad].next_run is None
    assert listed[good].last_error == "" and listed[good].next_run is not None
    dispatcher.core.update_schedule(Who("ann"), bad, UpdateSchedule(cron="* * * * *"))
    clock.now = T0 + timedelta(minutes=2)
    dispatcher.trigger(clock.now)
    assert dispatcher.core.get_schedule(Who("ann"), bad).last_error == ""
    assert slots(url) == [(1, 1), (2, 1), (2, 1)]


def test_resuming_a_paused_schedule_does_not_replay_the_pause(url, tmp_path):
    clock = Clock()
    dispatcher = scheduler(url, clock, tmp_path)
    schedule_id = every_minute(dispatcher)
    dispatcher.core.update_schedule(Who("ann"), schedule_id, UpdateSchedule(active=False))
    clock.now = T0 + timedelta(minutes=10)
    dispatcher.trigger(clock.now)
    dispatcher.core.update_schedule(Who("ann"), schedule_id, UpdateSchedule(active=True))
    clock.now = T0 + timedelta(minutes=11)
    dispatcher.trigger(clock.now)
    assert slots(url) == [(11, 1)]


def test_runs_are_counted_by_status_for_prometheus(url, tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from gpulab.extensions.scheduler.metrics import register_run_metrics

    registry = CollectorRegistry()
    register_run_metrics(url, registry)
    register_run_metrics(url, registry)  # a second load of the hub's configuration adds nothing
    dispatcher = scheduler(url, Clock(), tmp_path)
    nb = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])))
    dispatcher.core.create_run(Who("ann"), CreateRun(name="now", notebook=nb))
    text = generate_latest(registry).decode()
    assert 'gpulab_scheduled_runs{status="QUEUED"} 1.0' in text
    assert 'gpulab_scheduled_runs{status="COMPLETED"} 0.0' in text


def test_a_scheduled_job_runs_its_one_snapshot_at_each_slot(url, tmp_path):
    """Issue 21: a script on cron. The folder is snapshotted when it is scheduled; each slot queues a
    run of the job, whose runner fetches that snapshot (the runner's side: tests/hub/extensions/scheduler/test_scheduler_jobs.py)."""
    import base64

    from gpulab.extensions.scheduler.schemas import CreateJobSchedule
    from gpulab.extensions.scheduler.snapshots import pack

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text("print('epoch')")
    clock = Clock()
    dispatcher = scheduler(url, clock, tmp_path)
    request = CreateJobSchedule(name="nightly", kind="script", command=["python", "train.py", "--lr", "0.1"],
                                snapshot=base64.b64encode(pack(folder)).decode(), cron="* * * * *")
    schedule = dispatcher.core.create_job_schedule(Who("ann"), request)
    (folder / "train.py").write_text("print('edited later')")  # the schedule keeps what it was given
    listed = dispatcher.core.get_schedule(Who("ann"), schedule.id)
    assert (listed.kind, listed.command, listed.cron) == ("script", ["python", "train.py", "--lr", "0.1"], "* * * * *")
    assert slots(url) == []  # nothing now: it waits for its slots
    for minute in (1, 2):
        clock.now = T0 + timedelta(minutes=minute)
        dispatcher.trigger(clock.now)
    assert slots(url) == [(1, 1), (2, 1)]
    from gpulab.extensions.scheduler.core import token_digest

    with make_session_factory(make_engine(url)).begin() as session:  # as the dispatcher starts it
        run = session.scalars(select(Run)).first()
        run.token_hash, run_id = token_digest("t"), run.id
    spec = dispatcher.core.runner_spec(run_id, "t")
    assert (spec["kind"], spec["command"]) == ("script", ["python", "train.py", "--lr", "0.1"])
    assert dispatcher.core.runner_snapshot(run_id, "t").read_bytes() == base64.b64decode(request.snapshot)


def test_a_scheduled_job_with_a_cron_that_never_fires_is_refused(url, tmp_path):
    import base64

    from gpulab.extensions.scheduler.schemas import CreateJobSchedule
    from gpulab.extensions.scheduler.snapshots import pack
    from gpulab.hub_config.services.errors import Invalid

    (tmp_path / "p").mkdir()
    request = CreateJobSchedule(name="never", kind="command", command=["true"],
                                snapshot=base64.b64encode(pack(tmp_path / "p")).decode(), cron="0 0 31 2 *")
    with pytest.raises(Invalid, match="never"):
        scheduler(url, Clock(), tmp_path).core.create_job_schedule(Who("ann"), request)
