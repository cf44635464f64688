"""Scheduled notebook runs end to end: a real hub, the scheduler service, real Papermill and kernels."""

from __future__ import annotations

import json
import os
import pwd
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name
from tests.support.hub import wait_for
from tests.support.projects import create_project, project_settings
from tests.support.scheduler_runs import notebook, outputs_text, run_once, wait_run


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    return module_hub_factory.start({**project_settings(projects_root, account_prefix, "sched"),
                                     "scheduler": {"prewarm_seconds": 2, "missed_slot_grace_seconds": 30,
                                                   # the test's own webhook receiver listens on loopback
                                                   "notifications": {"webhook_allowed_networks": ["127.0.0.1/32"]}}})


@pytest.fixture(scope="module")
def alice(hub) -> HubClient:
    hub.create_user("sched-alice")
    return HubClient(hub.url, hub.user_token("sched-alice"))


def test_typed_parameters_land_in_the_notebook_and_the_run_is_kept(hub, alice):
    nb = notebook("print(type(lr).__name__, lr, type(epochs).__name__, epochs, type(tags).__name__, name)",
                  "import os; print('user', os.environ['USER'], 'cwd', os.getcwd())",
                  parameters="lr = 0.1\nepochs = 1\ntags = []\nname = 'x'")
    run = run_once(alice, nb, parameters={"lr": 0.01, "epochs": 3, "tags": ["a", "b"], "name": "trial"})
    assert run["status"] in ("QUEUED", "RUNNING")
    done = wait_run(alice, run["id"])
    assert done["status"] == "COMPLETED", done
    assert set(done["outputs"]) >= {"output.ipynb", "output.html", "log.txt"}
    assert (done["cells_done"], done["cells_total"]) == (4, 4)  # with the injected parameters cell
    assert done["duration_seconds"] > 0 and done["kernel_ready_at"] is not None
    executed = alice.request("GET", f"services/scheduler/api/runs/{run['id']}/files/output.ipynb")
    text = outputs_text(executed)
    assert "float 0.01 int 3 list trial" in text
    assert "float 0.01 int 3 list trial" in alice.download(f"services/scheduler/api/runs/{run['id']}/files/log.txt").decode()
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "epochs = 3" in "".join(injected[0]["source"])
    if os.geteuid() == 0:
        assert f"user {account_name('sched-alice', hub.settings['spawner']['local']['account_prefix'])}" in text


def test_a_failing_notebook_ends_failed_with_the_cell_and_traceback_and_keeps_its_output(hub, alice):
    nb = notebook("print('before the error')", "1 / 0", "print('never')")
    done = wait_run(alice, run_once(alice, nb)["id"])
    assert done["status"] == "FAILED"
    assert done["error"]["ename"] == "ZeroDivisionError" and done["error"]["cell_index"] == 1
    assert any("ZeroDivisionError" in line for line in done["error"]["traceback"])
    assert done["message"].startswith("ZeroDivisionError in cell 1")
    executed = alice.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb")
    assert "before the error" in outputs_text(executed) and "never" not in outputs_text(executed)


@pytest.mark.root
def test_a_runs_kernel_talks_over_sockets_only_its_owner_can_reach(hub, alice):
    """Over TCP any local account could subscribe to a run's kernel output (issue 12, the
    isolation matrix): runs use ipc sockets in the owner's private /run/gpulab/<uid>."""
    nb = notebook("import json, os, stat\nfrom ipykernel.connect import get_connection_file\n"
                  "info = json.load(open(get_connection_file()))\n"
                  "folder = os.path.dirname(info['ip'])\n"
                  "print(info['transport'], folder, oct(stat.S_IMODE(os.stat(folder).st_mode)), os.stat(folder).st_uid == os.getuid())")
    done = wait_run(alice, run_once(alice, nb)["id"])
    assert done["status"] == "COMPLETED", done
    text = outputs_text(alice.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb"))
    transport, folder, mode, own = text.split()
    assert (transport, mode, own) == ("ipc", "0o700", "True") and folder.startswith("/run/gpulab/"), text


@pytest.mark.parametrize("body, message", [
    ({"name": "x", "notebook": {"cells": "nope"}}, "not a Jupyter notebook"),
    ({"name": "x"}, "notebook: Field required"),
    ({"name": "x", "notebook": notebook("1"), "profile": "gpu-42"}, "unknown profile 'gpu-42'"),
    ({"name": "x", "notebook": notebook("1"), "cron": "61 * * * *"}, "the minute field '61' is not valid"),
    ({"name": "x", "notebook": notebook("1"), "cron": "0 0 31 2 *"}, "cron: '0 0 31 2 *' never fires"),
    ({"name": "x", "notebook": notebook("1"), "cron": "* * * * *", "timezone": "Z" * 300}, "unknown time zone"),
    ({"name": "x", "notebook": notebook("1"), "cron": "* * * * *", "timezone": "Moon/Base"}, "unknown time zone"),
    ({"name": "x", "notebook": notebook("1"), "cron": "* * * * *", "surprise": 1}, "surprise: Extra inputs"),
])
def test_invalid_requests_are_400_with_the_reason(hub, alice, body, message):
    path = "services/scheduler/api/schedules" if "cron" in body else "services/scheduler/api/runs"
    with pytest.raises(ClientError) as refused:
        alice.request("POST", path, body)
    assert refused.value.status == 400 and message in refused.value.message, refused.value.message


def test_a_stored_schedule_that_never_fires_stops_only_itself(hub, alice):
    """As an older release could have stored it: the loop goes on, listing works, the row says why."""
    from sqlalchemy import update

    from gpulab.db import make_engine, make_session_factory
    from gpulab.extensions.scheduler.models import Schedule

    bad = alice.request("POST", "services/scheduler/api/schedules",
                        {"name": "feb-31", "notebook": notebook("1"), "cron": "0 0 * * *"})
    engine = make_engine(f"sqlite:///{hub.data_dir / 'state' / 'gpulab.sqlite'}")
    try:
        with make_session_factory(engine).begin() as session:
            session.execute(update(Schedule).where(Schedule.id == bad["id"]).values(cron="0 0 31 2 *"))
    finally:
        engine.dispose()
    alice.request("POST", "services/scheduler/api/runs", {"name": "wake", "notebook": notebook("1")})  # a tick
    listed = wait_for(lambda: [s for s in alice.request("GET", "services/scheduler/api/schedules")
                               if s["id"] == bad["id"] and s["last_error"]], 30, "the error on the schedule")
    assert "never fires" in listed[0]["last_error"] and listed[0]["next_run"] is None
    assert wait_run(alice, run_once(alice, notebook("print(1)"))["id"])["status"] == "COMPLETED"  # still dispatching
    alice.request("DELETE", f"services/scheduler/api/schedules/{bad['id']}")


def test_a_prewarmed_slot_starts_at_its_time_not_before(hub, alice):
    """prewarm_seconds is 2: the kernel starts early, the recorded start and the first cell do not."""
    from datetime import datetime

    schedule = alice.request("POST", "services/scheduler/api/schedules", {
        "name": "on-the-minute", "cron": "* * * * *",
        "notebook": notebook("import datetime; print('first cell at', datetime.datetime.now(datetime.timezone.utc)"
                             ".isoformat())")})
    try:
        runs = wait_for(lambda: [r for r in alice.request("GET", "services/scheduler/api/runs")
                                 if r["schedule_id"] == schedule["id"]], 75, "the first slot's run")
    finally:
        alice.request("PATCH", f"services/scheduler/api/schedules/{schedule['id']}", {"active": False})
    done = wait_run(alice, runs[-1]["id"])
    assert done["status"] == "COMPLETED", done
    slot = datetime.fromisoformat(done["slot"])
    assert datetime.fromisoformat(done["started_at"]) >= slot
    executed = alice.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb")
    first_cell = outputs_text(executed).split("first cell at ", 1)[1].split()[0]
    assert datetime.fromisoformat(first_cell) >= slot


def kernels_of(account: str) -> list:
    import psutil

    return [p for p in psutil.process_iter(["username", "cmdline"])
            if p.info["username"] == account and "ipykernel_launcher" in " ".join(p.info["cmdline"] or [])]


def test_a_run_writes_its_files_as_the_owner(hub, alice):
    nb = notebook("open('made-by-run.txt', 'w').write('hi')")
    assert wait_run(alice, run_once(alice, nb)["id"])["status"] == "COMPLETED"
    if os.geteuid() == 0:
        account = pwd.getpwnam(account_name("sched-alice", hub.settings["spawner"]["local"]["account_prefix"]))
        made = os.stat(f"{account.pw_dir}/made-by-run.txt")
        assert (made.st_uid, made.st_gid) == (account.pw_uid, account.pw_gid)


def test_a_timeout_stops_the_kernel_and_retries_per_policy(hub, alice):
    nb = notebook("import time; time.sleep(600)")
    run = run_once(alice, nb, timeout_seconds=10, max_retries=1, retry_on_timeout=True)
    first = wait_run(alice, run["id"], timeout=90)
    assert first["status"] == "TIMED_OUT"
    assert "timed out after 10s (timeout_seconds); the kernel was stopped" in first["message"]
    assert "retry 1 of 1 queued" in first["message"]
    retries = [r for r in alice.request("GET", "services/scheduler/api/runs")
               if r["schedule_id"] == first["schedule_id"] and r["attempt"] == 2]
    assert len(retries) == 1
    second = wait_run(alice, retries[0]["id"], timeout=90)
    assert second["status"] == "TIMED_OUT" and "retry" not in second["message"]  # no third attempt
    if os.geteuid() == 0:
        account = account_name("sched-alice", hub.settings["spawner"]["local"]["account_prefix"])
        assert kernels_of(account) == []


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_hear_about_start_and_success(hub, alice):
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        run = run_once(alice, notebook("print(1)"), notify={"webhooks": [url], "on": ["start", "success"]})
        assert wait_run(alice, run["id"])["status"] == "COMPLETED"
        wait_for(lambda: len(Hook.received) >= 2, 30, "both notifications")
        assert [m["event"] for m in Hook.received] == ["start", "success"]
        assert Hook.received[1]["run"]["id"] == run["id"] and Hook.received[1]["run"]["status"] == "COMPLETED"
    finally:
        server.shutdown()


@pytest.mark.parametrize("url", ["http://[::1]:8080/", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.5/hook", "http://[::ffff:127.0.0.2]/", "http://127.0.0.2:80/"])
def test_webhooks_to_internal_addresses_are_400_unless_allowed(hub, alice, url):
    body = {"name": "hooked", "notebook": notebook("1"), "cron": "0 3 * * *",
            "notify": {"webhooks": [url], "on": ["failure"]}}
    with pytest.raises(ClientError) as refused:
        alice.request("POST", "services/scheduler/api/schedules", body)
    assert refused.value.status == 400 and "webhook_allowed_networks" in refused.value.message, refused.value.message
    allowed = alice.request("POST", "services/scheduler/api/schedules",
                            {**body, "notify": {"webhooks": ["http://127.0.0.1:9/hook"], "on": ["failure"]}})
    try:
        with pytest.raises(ClientError) as refused:
            alice.request("PATCH", f"services/scheduler/api/schedules/{allowed['id']}",
                          {"notify": {"webhooks": [url], "on": ["failure"]}})
        assert refused.value.status == 400
    finally:
        alice.request("DELETE", f"services/scheduler/api/schedules/{allowed['id']}")


def test_project_schedules_follow_project_roles(hub, alice):
    for name in ("sched-lead", "sched-viewer", "sched-editor", "sched-outsider"):
        hub.create_user(name)
    create_project(hub, "sched-lead", "vision", {"sched-viewer": "viewer", "sched-editor": "editor"})
    viewer, editor, outsider = (HubClient(hub.url, hub.user_token(n)) for n in
                                ("sched-viewer", "sched-editor", "sched-outsider"))
    body = {"name": "nightly", "notebook": notebook("print(1)"), "cron": "0 3 * * *", "project": "vision"}
    with pytest.raises(ClientError) as refused:
        viewer.request("POST", "services/scheduler/api/schedules", body)
    assert refused.value.status == 403 and "viewers of project 'vision'" in refused.value.message
    with pytest.raises(ClientError) as refused:
        outsider.request("POST", "services/scheduler/api/schedules", body)
    assert refused.value.status == 403
    schedule = editor.request("POST", "services/scheduler/api/schedules", body)
    assert viewer.request("GET", f"services/scheduler/api/schedules/{schedule['id']}")["name"] == "nightly"
    with pytest.raises(ClientError) as hidden:
        outsider.request("GET", f"services/scheduler/api/schedules/{schedule['id']}")
    assert hidden.value.status == 404
    assert all(s["id"] != schedule["id"] for s in outsider.request("GET", "services/scheduler/api/schedules"))
    with pytest.raises(ClientError) as refused:
        viewer.request("PATCH", f"services/scheduler/api/schedules/{schedule['id']}", {"active": False})
    assert refused.value.status == 403
    editor.request("DELETE", f"services/scheduler/api/schedules/{schedule['id']}")


def test_each_run_is_an_mlflow_run_of_its_owner(hub, alice, monkeypatch):
    """The runner logs to the hub's MLflow service with a token the scheduler minted in the
    owner's name: parameters, status, duration and the executed notebook, in a private
    experiment of the owner's (a project schedule's runs go to the project's experiment)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    nb = notebook("print(lr)", parameters="lr = 0.1")
    done = wait_run(alice, run_once(alice, nb, name="tracked", parameters={"lr": 0.5})["id"])
    assert done["status"] == "COMPLETED" and done["mlflow_run_id"], done

    def mlflow_as(user: str) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", hub.user_token(user))
        return MlflowClient(hub.url + "services/mlflow")

    logged = mlflow_as("sched-alice").get_run(done["mlflow_run_id"])
    assert logged.data.params == {"lr": "0.5"}
    assert logged.data.tags["gpulab.status"] == "COMPLETED" and logged.data.metrics["duration_seconds"] > 0
    assert (logged.info.status, logged.info.user_id, logged.info.run_name) == ("FINISHED", "sched-alice", "tracked #1")
    failed = wait_run(alice, run_once(alice, notebook("1 / 0"), name="tracked")["id"])
    assert failed["status"] == "FAILED" and failed["mlflow_run_id"], failed
    failed_run = mlflow_as("sched-alice").get_run(failed["mlflow_run_id"])
    assert failed_run.info.status == "FAILED" and failed_run.data.tags["gpulab.status"] == "FAILED"
    assert [a.path for a in mlflow_as("sched-alice").list_artifacts(failed["mlflow_run_id"])] == ["output.ipynb"]
    experiment = mlflow_as("sched-alice").get_experiment(logged.info.experiment_id)
    assert experiment.name == "scheduled: tracked (sched-alice)"
    assert [a.path for a in mlflow_as("sched-alice").list_artifacts(done["mlflow_run_id"])] == ["output.ipynb"]

    hub.create_user("sched-peeker")
    with pytest.raises(MlflowException) as refused:
        mlflow_as("sched-peeker").get_run(done["mlflow_run_id"])
    assert refused.value.get_http_status_code() in (403, 404)

    for name in ("sched-radar-lead", "sched-tracker", "sched-watcher"):
        hub.create_user(name)
    create_project(hub, "sched-radar-lead", "radar", {"sched-tracker": "editor", "sched-watcher": "viewer"})
    tracker = HubClient(hub.url, hub.user_token("sched-tracker"))
    project_run = wait_run(tracker, run_once(tracker, notebook("print(2)"), name="sweep", project="radar")["id"])
    assert project_run["status"] == "COMPLETED" and project_run["mlflow_run_id"], project_run
    seen = mlflow_as("sched-watcher").get_run(project_run["mlflow_run_id"])  # a viewer of the project
    assert mlflow_as("sched-watcher").get_experiment(seen.info.experiment_id).name == "radar/scheduled: sweep"
    with pytest.raises(MlflowException):
        mlflow_as("sched-peeker").get_run(project_run["mlflow_run_id"])


def test_the_hubs_metrics_count_runs_by_status(hub, alice):
    """Prometheus scrapes one endpoint per hub; the hub's process reports the scheduler's runs."""
    wait_run(alice, run_once(alice, notebook("print(1)"))["id"])
    metrics = hub.api.send("GET", "hub/metrics", None, None).decode()  # the test's service may read:metrics
    completed = [line for line in metrics.splitlines() if line.startswith('gpulab_scheduled_runs{status="COMPLETED"}')]
    assert completed and float(completed[0].split()[-1]) >= 1, completed


def test_changing_a_schedules_compute_is_checked_against_its_owner(hub, alice):
    """PATCH with a profile or environment asks the hub who the owner is (the scheduler's
    asynchronous directory) and checks the choice as for a new schedule."""
    schedule = alice.request("POST", "services/scheduler/api/schedules",
                             {"name": "compute", "notebook": notebook("1"), "cron": "0 0 * * *", "active": False})
    try:
        [option] = alice.request("GET", "services/scheduler/api/options")["profiles"][:1]
        changed = alice.request("PATCH", f"services/scheduler/api/schedules/{schedule['id']}",
                                {"profile": option["id"]})
        assert changed["profile"] == option["id"]
        with pytest.raises(ClientError) as refused:
            alice.request("PATCH", f"services/scheduler/api/schedules/{schedule['id']}", {"profile": "no-such-profile"})
        assert refused.value.status == 400 and "no-such-profile" in refused.value.message
    finally:
        alice.request("DELETE", f"services/scheduler/api/schedules/{schedule['id']}")
