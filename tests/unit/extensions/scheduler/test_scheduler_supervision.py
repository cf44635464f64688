"""A run ends with what its runner reported, exactly once, whichever scheduler process watches it.

Real SQLite, real SchedulerCore, Dispatcher and LocalExecutor; the "runners" are real processes
this test starts, so a fresh dispatcher knows them only by their reference (pid and start ticks),
as after a restart of the scheduler or the hub. The Reporter is tested against a real HTTP server.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import nbformat
import psutil
import pytest
from sqlalchemy import update

from gpulab.compute.ledger import Ledger, LocalPool
from gpulab.compute.processes import ProcessRef, start_ticks
from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade
from gpulab.extensions.scheduler.core import RunStorage, SchedulerCore, Who
from gpulab.extensions.scheduler.dispatcher import Dispatcher
from gpulab.spawner.backends.local.executor import LocalExecutor
from gpulab.spawner.backends.local.runner_process import ProcessLauncher
from gpulab.extensions.scheduler.models import RUNNING, Run
from gpulab.extensions.scheduler.runner import Reporter
from gpulab.extensions.scheduler.schemas import CreateRun
from gpulab.hub_config.settings import complete
from tests.support.hub import wait_for
from tests.support.scheduler_clock import T0, Clock, FixedDirectory
from tests.support.scheduler_dispatch import report, runs


class Quiet:
    def send(self, *args):
        pass


@pytest.fixture
def dispatcher(tmp_path) -> Dispatcher:
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    values = complete({"hub": {"data_dir": str(tmp_path)}}, Path("/"))
    settings = {key: values[key] for key in ("profiles", "environments", "quotas", "scheduler")}
    # the spawner and hub settings the hub hands the service (scheduler/service_settings.py)
    settings["spawner"] = {key: values["spawner"][key] for key in ("backend", "local", "kubernetes")}
    settings["hub"] = {key: values["hub"][key] for key in ("data_dir", "log_level")}
    core = SchedulerCore(make_session_factory(make_engine(url)), settings, FixedDirectory(),
                         RunStorage(tmp_path / "runs"), clock=Clock())
    log = logging.getLogger("test")
    launcher = ProcessLauncher(values["spawner"]["local"]["account_prefix"], "", str(tmp_path), log)
    executor = LocalExecutor(launcher, LocalPool(Ledger(core.sessions), list))
    return Dispatcher(core, executor, Quiet(), log, "http://127.0.0.1:1/runner/")


def running_run(dispatcher: Dispatcher, ref: str, max_retries: int = 1) -> str:
    """A run another scheduler process started, as the database holds it."""
    nb = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])))
    run = dispatcher.core.create_run(Who("ann"), CreateRun(name="r", notebook=nb, max_retries=max_retries))
    with dispatcher.core.sessions.begin() as session:
        session.execute(update(Run).where(Run.id == run.id).values(
            status=RUNNING, started_at=T0, executor_ref=ref, token_hash="x"))
    return run.id


def ended_process_ref() -> str:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = start_ticks(process.pid)
    process.wait()
    return f"{process.pid}:{ticks}"


async def test_a_runner_that_reported_completed_is_completed_after_a_restart_and_not_retried(dispatcher):
    run_id = running_run(dispatcher, ended_process_ref(), max_retries=2)
    report(dispatcher, run_id, "COMPLETED")
    await dispatcher.supervise(T0 + timedelta(seconds=5))
    await dispatcher.supervise(T0 + timedelta(seconds=6))  # a second look (or process) changes nothing
    assert runs(dispatcher) == [(1, "COMPLETED")]


async def test_a_runner_that_died_without_a_report_fails_once_and_is_retried_once(dispatcher):
    run_id = running_run(dispatcher, ended_process_ref(), max_retries=1)
    await dispatcher.supervise(T0 + timedelta(seconds=5))
    await dispatcher.supervise(T0 + timedelta(seconds=6))
    assert runs(dispatcher) == [(1, "FAILED"), (2, "QUEUED")]
    assert "without reporting a result" in dispatcher.core.get_run(Who("ann"), run_id).message


async def test_a_live_runner_of_an_earlier_scheduler_is_watched_until_it_ends(dispatcher):
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        run_id = running_run(dispatcher, f"{process.pid}:{start_ticks(process.pid)}")
        await dispatcher.supervise(T0 + timedelta(seconds=5))
        assert runs(dispatcher) == [(1, "RUNNING")]
        report(dispatcher, run_id, "COMPLETED")
        # Reported, still handing over its files past the timeout: not timed out.
        await dispatcher.supervise(T0 + timedelta(days=8))
        assert runs(dispatcher) == [(1, "RUNNING")]
    finally:
        process.stdin.close()
        process.wait()
    await dispatcher.supervise(T0 + timedelta(days=8))
    assert runs(dispatcher) == [(1, "COMPLETED")]


async def test_a_restarted_scheduler_lets_a_late_runner_hand_over_before_timing_it_out(dispatcher):
    """The scheduler was down past the run's timeout; the runner finished in time and is retrying."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        run_id = running_run(dispatcher, f"{process.pid}:{start_ticks(process.pid)}")
        dispatcher.watching_since = T0 + timedelta(days=8)  # just started
        await dispatcher.supervise(T0 + timedelta(days=8, seconds=30))
        assert runs(dispatcher) == [(1, "RUNNING")]
        await dispatcher.supervise(T0 + timedelta(days=8, seconds=61))  # it never reported: timed out
        assert runs(dispatcher) == [(1, "TIMED_OUT")] and run_id
    finally:
        process.stdin.close()
        process.wait()


def test_a_zombie_runner_has_ended(dispatcher):
    """Under a pid 1 that never reaps (containers), a runner whose scheduler died stays a zombie."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie once it ends
    ref = ProcessRef.of(process.pid)
    try:
        wait_for(lambda: psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE, 30, "the zombie")
        assert dispatcher.executor.exit_code(ref) == -1
    finally:
        process.wait()


class Flaky(BaseHTTPRequestHandler):
    """Refuses (503) the first `failures` requests, then takes them."""

    failures = 0
    seen: list = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        Flaky.seen.append((self.command, self.path, self.rfile.read(length)))
        if Flaky.failures > 0:
            Flaky.failures -= 1
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(204)
        self.end_headers()

    do_POST = do_PUT = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    server = HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Flaky.seen = []
    yield server
    server.shutdown()
    server.server_close()


def test_the_result_is_retried_with_backoff_until_the_scheduler_takes_it(flaky):
    Flaky.failures = 3
    slept = []
    reporter = Reporter(f"http://127.0.0.1:{flaky.server_port}/r/", "t", deadline=100, sleep=slept.append,
                        clock=lambda: sum(slept))
    reporter.upload("output.ipynb", b"{}")
    reporter.event(kind="finished", status="COMPLETED")
    assert slept == [0.5, 1.0, 2.0]
    assert [(m, p) for m, p, _ in Flaky.seen][-2:] == [("PUT", "/r/files/output.ipynb"), ("POST", "/r/events")]


def test_progress_is_best_effort_and_the_result_gives_up_at_the_deadline():
    with HTTPServer(("127.0.0.1", 0), Flaky) as closed:
        port = closed.server_port  # nothing listens there once closed
    slept = []
    reporter = Reporter(f"http://127.0.0.1:{port}/r/", "t", deadline=20, sleep=slept.append, clock=lambda: sum(slept))
    reporter.event(kind="progress", cells_done=1)  # refused: reported later, the run goes on
    assert slept == []
    with pytest.raises(OSError):
        reporter.event(kind="finished", status="COMPLETED")
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0] and sum(slept) <= 20


async def test_nothing_is_dispatched_before_runners_can_reach_the_service(dispatcher):
    """run_forever waits on runner/ready: while nothing answers there it starts no run."""
    import asyncio
    import socket

    from tornado.web import Application, RequestHandler

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dispatcher.runner_url = f"http://127.0.0.1:{port}/runner/"
    waiting = asyncio.ensure_future(dispatcher.wait_until_reachable())
    for _ in range(20):  # several refused probes
        await asyncio.sleep(0.05)
    assert not waiting.done()

    class Ready(RequestHandler):
        def get(self):
            self.set_status(204)

    server = Application([("/runner/ready", Ready)]).listen(port, "127.0.0.1")
    try:
        await asyncio.wait_for(waiting, 30)
    finally:
        server.stop()


@pytest.mark.parametrize("field", ["cells_done", "cells_total"])
def test_runner_counts_past_the_column_are_400(dispatcher, field):
    from gpulab.extensions.scheduler.core import token_digest
    from gpulab.extensions.scheduler.schemas import RunnerEvent
    from gpulab.hub_config.services.errors import Invalid

    run_id = running_run(dispatcher, ended_process_ref())
    with dispatcher.core.sessions.begin() as session:
        session.get(Run, run_id).token_hash = token_digest("tok")
    with pytest.raises(Invalid, match=f"{field}: {2**63} is out of range"):
        dispatcher.core.runner_event(run_id, "tok", RunnerEvent(kind="progress", **{field: 2**63}))
    dispatcher.core.runner_event(run_id, "tok", RunnerEvent(kind="progress", **{field: 7}))
    assert getattr(dispatcher.core.get_run(Who("ann"), run_id), field) == 7


async def test_a_run_never_launched_fails_after_a_while_and_a_stopped_one_stops(dispatcher):
    """A scheduler killed between marking a run RUNNING and launching its runner left no reference."""
    never = running_run(dispatcher, "", max_retries=0)
    await dispatcher.supervise(T0 + timedelta(seconds=30))
    assert runs(dispatcher) == [(1, "RUNNING")]  # it may still be launching
    await dispatcher.supervise(T0 + timedelta(minutes=5))
    assert dispatcher.core.get_run(Who("ann"), never).message == "the scheduler stopped while starting the runner"
    stopped = running_run(dispatcher, "", max_retries=0)
    dispatcher.core.stop_run(Who("ann"), stopped)
    await dispatcher.supervise(T0 + timedelta(seconds=1))
    assert dispatcher.core.get_run(Who("ann"), stopped).status == "STOPPED"
