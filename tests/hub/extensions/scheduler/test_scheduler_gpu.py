"""Scheduled runs and interactive servers share one GPU ledger: a run waits, with its reason, for a free GPU.

GPUs are declared (tests/support/declared_gpus.py); CUDA itself is not exercised here.
"""

from __future__ import annotations

import pytest

from gpulab.hub_config.client import HubClient
from tests.support.gpu_hub import make_user, start_gpu_hub
from tests.support.hub import wait_for
from tests.support.scheduler_runs import notebook, outputs_text, run_once, wait_run


@pytest.fixture(scope="module")
def hub(module_hub_factory, tmp_path_factory):
    hub = start_gpu_hub(module_hub_factory, tmp_path_factory.mktemp("gpu-sched"), gpus=1, migs=0, name="gpu-sched")
    hub.api.request("POST", "hub/api/groups/ml", {"users": []})
    return hub


def status_of(client, run_id):
    return client.request("GET", f"services/scheduler/api/runs/{run_id}")


def test_two_gpu_runs_on_one_gpu_take_turns(hub):
    make_user(hub, "trainer", ["ml"])
    client = HubClient(hub.url, hub.user_token("trainer"))
    nb = notebook("import os, time; print('devices', os.environ['CUDA_VISIBLE_DEVICES']); time.sleep(4)")
    first = run_once(client, nb, profile="gpu-1")
    wait_for(lambda: status_of(client, first["id"])["status"] == "RUNNING", 60, "the first run to start")
    second = run_once(client, nb, profile="gpu-1")
    waiting = wait_for(lambda: (r := status_of(client, second["id"]))["status"] == "WAITING" and r, 30,
                       "the second run to wait")
    assert "waiting for 1 GPU: not enough free devices for 1 GPU; all are in use" in waiting["message"]
    done = wait_run(client, first["id"])
    assert done["status"] == "COMPLETED" and done["devices"] == ["GPU-00000000-test"]
    later = wait_run(client, second["id"])
    assert later["status"] == "COMPLETED" and later["started_at"] >= done["ended_at"]
    executed = client.request("GET", f"services/scheduler/api/runs/{second['id']}/files/output.ipynb")
    assert "devices GPU-00000000-test" in outputs_text(executed)


def test_a_run_waits_while_an_interactive_server_holds_the_gpu(hub):
    make_user(hub, "interactive", ["ml"])
    make_user(hub, "batch", ["ml"])
    hub.spawn("interactive", options={"profile": "gpu-1"})
    client = HubClient(hub.url, hub.user_token("batch"))
    run = run_once(client, notebook("print('ran')"), profile="gpu-1")
    wait_for(lambda: status_of(client, run["id"])["status"] == "WAITING", 30, "the run to wait for the GPU")
    hub.stop_server("interactive")
    assert wait_run(client, run["id"])["status"] == "COMPLETED"
