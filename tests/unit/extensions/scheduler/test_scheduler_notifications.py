"""A run's "start" notification goes out once per attempt, however many times the run is dispatched.

Real SQLite, real SchedulerCore and Dispatcher; the executor is a fake that starts nothing and
reports what the test tells it (an exit code, a standby lost before it began the run); the
notifier records what would be sent.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest

from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade
from gpulab.extensions.scheduler.core import RunStorage, SchedulerCore, Who
from gpulab.extensions.scheduler.dispatcher import Dispatcher
from gpulab.extensions.scheduler.schemas import CreateRun
from gpulab.hub_config.settings import complete
from tests.support.scheduler_clock import T0, Clock, FixedDirectory
from tests.support.scheduler_dispatch import report, runs


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, event, schedule, run):
        self.sent.append((event, run.id))


class FakeExecutor:
    """Starts nothing: each start is a new reference; the test says how each one ended."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.exit_codes: dict[str, int] = {}
        self.lost: set[str] = set()

    async def admit(self, profile, nodes):
        return None

    async def start(self, request) -> str:
        self.started.append(request.run_id)
        return f"ref-{len(self.started)}"

    def parse_ref(self, text: str) -> str:
        return text

    def exit_code(self, ref: str) -> int | None:
        return self.exit_codes.get(ref)

    def lost_before_start(self, run_id: str, ref: str) -> bool:
        return ref in self.lost

    def stop(self, run_id, ref):
        pass

    def cleanup(self, run_id, ref=None, ended=""):
        pass

    def picked_up(self, run_id):
        pass


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    return url


def scheduler(url, tmp_path, clock, executor, notifier) -> Dispatcher:
    """One scheduler process: its own engine, core and dispatcher over the shared database."""
    values = complete({"hub": {"data_dir": str(tmp_path)}}, Path("/"))
    settings = {key: values[key] for key in ("profiles", "environments", "quotas", "scheduler")}
    core = SchedulerCore(make_session_factory(make_engine(url)), settings, FixedDirectory(),
                         RunStorage(tmp_path / "runs"), clock=clock)
    return Dispatcher(core, executor, notifier, logging.getLogger("test"), "http://127.0.0.1:1/runner/")


def run_once(dispatcher: Dispatcher, max_retries: int = 0) -> str:
    nb = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])))
    return dispatcher.core.create_run(Who("ann"), CreateRun(name="r", notebook=nb, max_retries=max_retries)).id


async def test_a_run_given_back_by_a_lost_standby_announces_its_start_once_across_a_restart(url, tmp_path):
    clock, executor, notifier = Clock(), FakeExecutor(), Recorder()
    before = scheduler(url, tmp_path, clock, executor, notifier)
    run_id = run_once(before)
    await before.dispatch(clock.now)
    assert executor.started == [run_id] and notifier.sent == [("start", run_id)]

    executor.exit_codes["ref-1"] = -1  # the standby it was handed to was killed before fetching its spec
    executor.lost.add("ref-1")
    clock.now = T0 + timedelta(seconds=5)
    await before.supervise(clock.now)
    assert runs(before) == [(1, "QUEUED")]

    after = scheduler(url, tmp_path, clock, executor, notifier)  # restarted in between: nothing in memory
    clock.now = T0 + timedelta(seconds=6)
    await after.dispatch(clock.now)
    assert executor.started == [run_id, run_id] and runs(after) == [(1, "RUNNING")]
    assert after.core.get_run(Who("ann"), run_id).started_at == clock.now  # its time is the real start's

    executor.exit_codes["ref-2"] = 0
    report(after, run_id, "COMPLETED")
    clock.now = T0 + timedelta(seconds=9)
    await after.supervise(clock.now)
    assert runs(after) == [(1, "COMPLETED")]
    assert notifier.sent == [("start", run_id), ("success", run_id)]


async def test_a_retry_after_a_failure_is_an_attempt_of_its_own_with_its_own_start(url, tmp_path):
    clock, executor, notifier = Clock(), FakeExecutor(), Recorder()
    dispatcher = scheduler(url, tmp_path, clock, executor, notifier)
    first = run_once(dispatcher, max_retries=1)
    await dispatcher.dispatch(clock.now)
    executor.exit_codes["ref-1"] = 1  # a genuine failure, not a lost hand-over
    clock.now = T0 + timedelta(seconds=5)
    await dispatcher.supervise(clock.now)
    assert runs(dispatcher) == [(1, "FAILED"), (2, "QUEUED")]
    clock.now = T0 + timedelta(hours=1)  # past any retry delay
    await dispatcher.dispatch(clock.now)
    [retry] = [run_id for run_id in executor.started if run_id != first]
    assert notifier.sent == [("start", first), ("failure", first), ("start", retry)]
