"""Script and command jobs end to end: a real hub, the scheduler service, `gpulab` as a user runs it.

A job is a run of the scheduler like a notebook's (one store, one queue, one GPU ledger): the
folder it is submitted from travels as a snapshot, the command runs as its owner's account in
it, its output streams (`gpulab logs -f`), its exit status and duration are kept, and the
files it writes to outputs/ are its artifacts, in the scheduler and in an MLflow run.
"""

from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name
from tests.support.hub import GPULAB, wait_for
from tests.support.scheduler_runs import wait_run


TRAIN = """\
import json, os, sys
print("args", sys.argv[1:], "user", os.environ.get("USER"), "gpus", repr(os.environ.get("CUDA_VISIBLE_DEVICES")))
print("data", open("data/input.txt").read().strip(), "GPULAB_RUN_TOKEN" in os.environ)
os.makedirs("outputs/sub", exist_ok=True)
open("outputs/model.txt", "w").write("weights " + sys.argv[-1])
json.dump({"loss": 0.25}, open("outputs/sub/metrics.json", "w"))
"""


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start()
    hub.create_user("job-user")
    return hub


@pytest.fixture(scope="module")
def client(hub) -> HubClient:
    return HubClient(hub.url, hub.user_token("job-user"))


@pytest.fixture
def gpulab(hub, tmp_path):
    env = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": hub.user_token("job-user")}
    env.pop("JUPYTERHUB_API_TOKEN", None)

    def run(*args, cwd=tmp_path, wait=True):
        command = [GPULAB, *args]
        if not wait:
            return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)

    return run


def test_a_script_job_runs_in_its_snapshot_and_keeps_its_outputs(hub, client, gpulab, tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text("from the snapshot")
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "stale.txt").write_text("an earlier run's")  # not sent: outputs/ is the job's own
    result = gpulab("run", "train.py", "--wait", "--", "--lr", "0.01")
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[0]
    # --wait streams the job's output while it runs
    assert "args ['--lr', '0.01']" in result.stderr and "data from the snapshot False" in result.stderr
    run = client.request("GET", f"services/scheduler/api/runs/{run_id}")
    assert (run["status"], run["kind"], run["exit_code"]) == ("COMPLETED", "script", 0), run
    assert run["command"] == ["python", "train.py", "--lr", "0.01"] and run["duration_seconds"] > 0
    assert run["artifacts"] == ["outputs/model.txt", "outputs/sub/metrics.json"]
    assert client.download(f"services/scheduler/api/runs/{run_id}/artifacts/outputs/model.txt") == b"weights 0.01"
    log = client.request("GET", f"services/scheduler/api/runs/{run_id}/log")
    assert log["ended"] and "gpus ''" in log["text"]  # a CPU profile sees no GPU
    if os.geteuid() == 0:
        assert f"user {account_name('job-user', hub.settings['spawner']['local']['account_prefix'])}" in log["text"]

    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", hub.user_token("job-user"))
    mlflow = MlflowClient(hub.url + "services/mlflow")
    logged = mlflow.get_run(run["mlflow_run_id"])
    assert logged.info.status == "FINISHED" and logged.info.user_id == "job-user"
    assert logged.data.params["command"] == "python train.py --lr 0.01" and logged.data.metrics["exit_code"] == 0
    assert mlflow.get_experiment(logged.info.experiment_id).name == "job: train (job-user)"
    assert [a.path for a in mlflow.list_artifacts(run["mlflow_run_id"], "outputs")] == ["outputs/model.txt", "outputs/sub"]
    with pytest.raises(ClientError) as missing:
        client.download(f"services/scheduler/api/runs/{run_id}/artifacts/outputs/stale.txt")
    assert missing.value.status == 404


def test_a_command_job_keeps_its_exit_status_and_logs_follow_it(client, gpulab, tmp_path):
    submitted = gpulab("run", "--name", "counting", "--", "sh", "-c", "echo first; sleep 3; echo last; exit 3")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.split()[0]
    follower = gpulab("logs", "-f", run_id, wait=False)
    wait_for(lambda: client.request("GET", f"services/scheduler/api/runs/{run_id}")["status"] == "RUNNING", 60,
             "the job to start")
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    assert out.index("first") < out.index("last")  # everything, in order, and it stopped once the job ended
    run = client.request("GET", f"services/scheduler/api/runs/{run_id}")
    assert (run["status"], run["kind"], run["exit_code"]) == ("FAILED", "command", 3), run
    assert run["message"] == "the command exited with status 3" and run["duration_seconds"] >= 3
    waited = gpulab("run", "--wait", "--", "sh", "-c", "exit 5")
    assert waited.returncode == 5 and "FAILED" in waited.stdout
    missing = gpulab("run", "--wait", "--", "no-such-program-here")
    assert missing.returncode == 127 and "cannot run 'no-such-program-here'" in missing.stdout + missing.stderr


def test_stop_ends_the_jobs_whole_process_group(client, gpulab, tmp_path):
    (tmp_path / "spawn.py").write_text(
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "print('pids', os.getpid(), child.pid, flush=True)\n"
        "time.sleep(300)\n")
    run_id = gpulab("run", "spawn.py").stdout.split()[0]
    text = wait_for(lambda: "pids" in (t := client.request("GET", f"services/scheduler/api/runs/{run_id}/log")["text"])
                    and t, 60, "the job to print its processes")
    pids = [int(p) for p in text.split("pids", 1)[1].split()[:2]]
    assert all(psutil.pid_exists(pid) for pid in pids)
    stopped = gpulab("stop", run_id)
    assert stopped.returncode == 0 and run_id in stopped.stdout, stopped.stderr
    run = wait_run(client, run_id)
    assert run["status"] == "STOPPED"

    def gone(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(pid) for pid in pids), 15, "the script and its child to end")
    again = gpulab("stop", run_id)
    assert again.returncode == 2 and "has already ended (STOPPED)" in again.stderr


def test_a_folder_over_the_size_limit_is_refused_with_the_reason(gpulab, tmp_path):
    (tmp_path / "train.py").write_text("print(1)")
    with open(tmp_path / "huge.bin", "wb") as big:  # sparse: nothing is written to the disk
        big.truncate(65 << 20)
    result = gpulab("run", "train.py")
    assert result.returncode == 2
    assert "holds 65.0 MiB of files; a job's snapshot is at most 64.0 MiB (largest: huge.bin (65.0 MiB)" \
        in result.stderr, result.stderr
    small = tmp_path / "small"
    small.mkdir()
    (small / "train.py").write_text("print('small', 1)")
    assert gpulab("run", "--dir", "small", "small/train.py", "--wait").returncode == 0


@pytest.mark.parametrize("args, message", [
    (["run"], "what to run: a notebook, a script"),
    (["run", "nowhere.py"], "nowhere.py: no such file"),
    (["run", "train.py", "-p", "lr=1"], "-p, -r, -y, -f, -b, -k and --cwd are for notebooks"),
    (["run", "--nodes", "2", "--", "hostname"], "nodes: 2 nodes need spawner.backend kubernetes"),
    (["schedule", "list", "--", "x"], "'--' belongs to `gpulab run`"),
    (["logs", "nope"], "no run 'nope'"),
])
def test_job_mistakes_exit_2_with_the_reason(gpulab, tmp_path, args, message):
    (tmp_path / "train.py").write_text("print(1)")
    result = gpulab(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_job_is_a_run_like_any_other(client, gpulab, tmp_path):
    """Listed with the notebook runs, and its unknown artifact or a path out of outputs/ is a 4xx."""
    run_id = gpulab("run", "--wait", "--", "true").stdout.split()[0]
    listed = {r["id"]: r for r in client.request("GET", "services/scheduler/api/runs")}
    assert listed[run_id]["kind"] == "command" and listed[run_id]["status"] == "COMPLETED"
    # The proxy folds `..` before the service sees it; the service refuses what still comes (unit test)
    for path, status in (("outputs/none.txt", (404,)), ("outputs/../log.txt", (400, 404)),
                         ("outputs/a%2F..%2F..%2Flog.txt", (400, 404))):
        with pytest.raises(ClientError) as refused:
            client.download(f"services/scheduler/api/runs/{run_id}/artifacts/{path}")
        assert refused.value.status in status, (path, refused.value.message)


def test_a_script_on_cron_runs_its_snapshot_at_its_slot(client, gpulab, tmp_path):
    """Issue 21: `gpulab schedule create train.py --cron ... -- ARGS`. The folder goes once, when it
    is scheduled; the first slot (within a minute) runs it as a job with its arguments."""
    (tmp_path / "nightly.py").write_text("import sys; print('nightly', sys.argv[1:], open('note.txt').read())")
    (tmp_path / "note.txt").write_text("as scheduled")
    created = gpulab("schedule", "create", "nightly.py", "--cron", "* * * * *", "--", "--epochs", "2")
    assert created.returncode == 0, created.stderr
    schedule_id = created.stdout.split()[0]
    (tmp_path / "note.txt").write_text("edited later")  # the schedule keeps its snapshot
    schedule = client.request("GET", f"services/scheduler/api/schedules/{schedule_id}")
    assert (schedule["kind"], schedule["command"]) == ("script", ["python", "nightly.py", "--epochs", "2"])
    runs = wait_for(lambda: [r for r in client.request("GET", f"services/scheduler/api/schedules/{schedule_id}/runs")
                             if r["status"] in ("COMPLETED", "FAILED")], 150, "the first slot's run")
    run = runs[0]
    assert (run["status"], run["kind"], run["exit_code"]) == ("COMPLETED", "script", 0), run
    log = client.request("GET", f"services/scheduler/api/runs/{run['id']}/log")["text"]
    assert "nightly ['--epochs', '2'] as scheduled" in log
    client.request("DELETE", f"services/scheduler/api/schedules/{schedule_id}")
    refused = gpulab("schedule", "create", "nightly.py", "--cron", "0 0 31 2 *")
    assert refused.returncode != 0 and "never" in refused.stderr
