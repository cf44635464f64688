"""Runs survive the processes around them: kill -9 the scheduler service, or the hub, while a run
is in flight, and the run still ends with its true outcome, once, with its outputs kept.

A real hub and scheduler, real runners and kernels. Each notebook appends a line to a file in
its owner's home, so a second execution of the same attempt (or a retry of a completed one)
would show.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timezone

import psutil

from gpulab.hub_config.client import HubClient
from tests.support.hub import RunningHub, services_of, wait_for
from tests.support.scheduler_runs import (answers, home_of, in_second_cell, notebook, outputs_text, run_log, run_once,
                                          scheduler_pids, wait_run)


SETTINGS = {"scheduler": {"prewarm_seconds": 2, "missed_slots": "run_once", "missed_slot_grace_seconds": 30}}


def marked_notebook(marker: str, seconds: int) -> dict:
    """Records each execution in ~/<marker>.txt, works for `seconds`, prints `<marker> done`."""
    return notebook(f"import pathlib; pathlib.Path.home().joinpath('{marker}.txt').open('a').write('ran\\n')",
                    f"import time; time.sleep({seconds})", f"print('{marker} done')")


def assert_ended_once(hub: RunningHub, client: HubClient, user: str, run: dict, marker: str) -> None:
    wait_for(lambda: answers(client), 60, "the scheduler to answer again")
    done = wait_run(client, run["id"], timeout=180)
    assert done["status"] == "COMPLETED", (done, run_log(hub, run["id"]))
    attempts = [r for r in client.request("GET", "services/scheduler/api/runs") if r["schedule_id"] == run["schedule_id"]]
    assert [r["attempt"] for r in attempts] == [1]  # no retry of an attempt that completed
    assert {"output.ipynb", "output.html", "log.txt"} <= set(done["outputs"])
    executed = client.request("GET", f"services/scheduler/api/runs/{run['id']}/files/output.ipynb")
    assert f"{marker} done" in outputs_text(executed)
    assert (home_of(hub, user) / f"{marker}.txt").read_text() == "ran\n"  # executed exactly once


def test_killing_the_scheduler_service_mid_run_keeps_the_run_and_its_outcome(hub_factory):
    hub = hub_factory.start(SETTINGS)
    hub.create_user("fault-sam")
    sam = HubClient(hub.url, hub.user_token("fault-sam"))
    run = run_once(sam, marked_notebook("svc", 8), max_retries=1)
    in_second_cell(sam, run["id"])
    [old] = scheduler_pids(hub)
    os.kill(old, signal.SIGKILL)
    # The hub restarts its managed service; the new one finds the runner by its reference.
    wait_for(lambda: (pids := scheduler_pids(hub)) and old not in pids, 60, "the hub to restart the scheduler")
    assert_ended_once(hub, sam, "fault-sam", run, "svc")


def test_killing_the_hub_mid_run_keeps_the_run_and_nothing_starts_before_the_scheduler_listens(hub_factory):
    hub = hub_factory.start(SETTINGS)
    hub.create_user("fault-kim")
    kim = HubClient(hub.url, hub.user_token("fault-kim"))
    run = run_once(kim, marked_notebook("hub", 3), max_retries=1)
    every_minute = kim.request("POST", "services/scheduler/api/schedules",
                               {"name": "minutely", "notebook": marked_notebook("cron", 0), "cron": "* * * * *"})
    in_second_cell(kim, run["id"])
    hub_pid, killed_at = hub.process.pid, datetime.now(timezone.utc)
    os.kill(hub_pid, signal.SIGKILL)
    hub.process.wait()
    wait_for(lambda: not services_of(hub_pid), 30, "the killed hub's services to end")
    # The runner outlives them: it finishes the notebook and keeps trying to hand over its result.
    wait_for(lambda: "the scheduler is not reachable" in run_log(hub, run["id"]), 120, "the runner to wait")
    # Stay down across a slot of the minutely schedule: it is due the moment the scheduler is back.
    wait_for(lambda: datetime.now(timezone.utc).replace(second=0, microsecond=0) > killed_at, 65,
             "a minute boundary while down", interval=0.5)
    restarted_at = datetime.now(timezone.utc)
    hub.start()
    assert_ended_once(hub, kim, "fault-kim", run, "hub")

    def missed() -> list[dict]:
        return [r for r in kim.request("GET", "services/scheduler/api/runs") if r["schedule_id"] == every_minute["id"]
                and killed_at <= datetime.fromisoformat(r["slot"]) <= restarted_at]

    slot_run = wait_for(missed, 60, "the missed slot's run")[0]
    kim.request("PATCH", f"services/scheduler/api/schedules/{every_minute['id']}", {"active": False})
    done = wait_run(kim, slot_run["id"], timeout=120)
    assert done["status"] == "COMPLETED", (done, run_log(hub, done["id"]))  # not "connection refused"
    assert datetime.fromisoformat(done["started_at"]) >= datetime.fromisoformat(done["slot"])
    assert len(missed()) == 1  # run_once: one run for the outage


def processes_of_run(run_id: str) -> list[psutil.Process]:
    from gpulab.spawner.backends.local.runner_process import leftovers

    return [p for p in leftovers(run_id) if p.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_runner_fails_once_keeps_its_log_and_leaves_no_kernel(hub_factory):
    hub = hub_factory.start(SETTINGS)
    hub.create_user("fault-ria")
    ria = HubClient(hub.url, hub.user_token("fault-ria"))
    run = run_once(ria, notebook("print('before the kill', flush=True)", "import time; time.sleep(300)"))
    wait_for(lambda: ria.request("GET", f"services/scheduler/api/runs/{run['id']}")["cells_done"] >= 1, 120,
             "the first cell")
    [runner] = [p for p in processes_of_run(run["id"]) if "scheduler.runner" in " ".join(p.cmdline())]
    runner.kill()
    done = wait_run(ria, run["id"], timeout=60)
    assert done["status"] == "FAILED" and "without reporting a result" in done["message"], done
    assert "log.txt" in done["outputs"]
    assert "before the kill" in ria.download(f"services/scheduler/api/runs/{run['id']}/files/log.txt").decode()
    assert [r["attempt"] for r in ria.request("GET", "services/scheduler/api/runs")
            if r["schedule_id"] == run["schedule_id"]] == [1]
    wait_for(lambda: not processes_of_run(run["id"]), 30, "the orphaned kernel to be stopped")
