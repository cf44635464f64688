"""`gpulab run` and `gpulab schedule` as a user runs them: the real command, a real hub, a user token."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.hub import GPULAB
from tests.support.scheduler_runs import notebook


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start()
    hub.create_user("cli-user")
    return hub


@pytest.fixture
def gpulab(hub, tmp_path):
    env = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": hub.user_token("cli-user")}
    env.pop("JUPYTERHUB_API_TOKEN", None)

    def run(*args):
        return subprocess.run([GPULAB, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    return run


def test_run_waits_prints_the_result_and_saves_the_output(gpulab, tmp_path):
    (tmp_path / "train.ipynb").write_text(json.dumps(notebook("print('lr', lr, 'epochs', epochs)",
                                                              parameters="lr = 0.1\nepochs = 1")))
    result = gpulab("run", "train.ipynb", "-p", "lr=0.01", "-p", "epochs=3", "--wait", "--output", "out.ipynb")
    assert result.returncode == 0, result.stderr
    assert "COMPLETED" in result.stdout and "completed  3/3 cells" in result.stderr
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    assert "lr 0.01 epochs 3" in "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c["outputs"])


def test_a_failing_run_exits_1_and_shows_the_traceback(gpulab, tmp_path):
    (tmp_path / "broken.ipynb").write_text(json.dumps(notebook("raise ValueError('bad input')")))
    result = gpulab("run", "broken.ipynb", "--wait")
    assert result.returncode == 1
    assert "ValueError in cell 0 (In [1]): bad input" in result.stdout and "ValueError" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["run", "nowhere.ipynb"], "nowhere.ipynb: no such notebook"),
    (["run", "train.ipynb", "-p", "lr"], "-p 'lr': expected NAME=VALUE"),
    (["run", "train.ipynb", "--profile", "gpu-99"], "unknown profile 'gpu-99'"),
    (["schedule", "create", "train.ipynb", "--cron", "every day"], "invalid cron expression 'every day'"),
])
def test_mistakes_exit_2_with_the_reason(gpulab, tmp_path, args, message):
    (tmp_path / "train.ipynb").write_text(json.dumps(notebook("1")))
    result = gpulab(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_schedule_lifecycle(gpulab, tmp_path):
    (tmp_path / "daily.ipynb").write_text(json.dumps(notebook("1")))
    created = gpulab("schedule", "create", "daily.ipynb", "--cron", "0 6 * * 1-5", "--timezone", "Europe/Berlin")
    assert created.returncode == 0, created.stderr
    schedule_id = created.stdout.split()[0]
    assert f"{schedule_id}  active" in gpulab("schedule", "list").stdout
    assert gpulab("schedule", "pause", schedule_id).returncode == 0
    assert f"{schedule_id}  paused" in gpulab("schedule", "list").stdout
    assert gpulab("schedule", "resume", schedule_id).returncode == 0
    assert gpulab("schedule", "delete", schedule_id).returncode == 0
    assert schedule_id not in gpulab("schedule", "list").stdout
