"""Scheduled notebook runs end to end: a real hub, the scheduler service, real Papermill and kernels."""

from __future__ import annotations

import json
import os
import pwd
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import nbformat
import pytest

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name
from tests.support.hub import wait_for

FINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "STOPPED")


def notebook(*cells: str, parameters: str | None = None) -> dict:
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


def outputs_text(executed: dict) -> str:
    def text(output) -> str:
        value = output.get("text", "")
        return "".join(value) if isinstance(value, list) else value  # nbformat may split text into lines

    return "".join(text(o) for c in executed["cells"] for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"scheduler": {"prewarm_seconds": 2, "missed_slot_grace_seconds": 30}})


@pytest.fixture(scope="module")
def alice(hub) -> HubClient:
    hub.create_user("sched-alice")
    return HubClient(hub.url, hub.user_token("sched-alice"))


def wait_run(client: HubClient, run_id: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (r := client.request("GET", f"services/scheduler/api/runs/{run_id}"))["status"] in FINAL and r,
                    timeout, f"run {run_id} to end")


def run_once(client: HubClient, nb: dict, **fields) -> dict:
    return client.request("POST", "services/scheduler/api/runs", {"name": "once", "notebook": nb, **fields})


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


@pytest.mark.parametrize("body, message", [
    ({"name": "x", "notebook": {"cells": "nope"}}, "not a Jupyter notebook"),
    ({"name": "x"}, "notebook: Field required"),
    ({"name": "x", "notebook": notebook("1"), "profile": "gpu-42"}, "unknown profile 'gpu-42'"),
    ({"name": "x", "notebook": notebook("1"), "cron": "61 * * * *"}, "invalid cron expression"),
    ({"name": "x", "notebook": notebook("1"), "cron": "* * * * *", "timezone": "Moon/Base"}, "unknown time zone"),
    ({"name": "x", "notebook": notebook("1"), "cron": "* * * * *", "surprise": 1}, "surprise: Extra inputs"),
])
def test_invalid_requests_are_400_with_the_reason(hub, alice, body, message):
    path = "services/scheduler/api/schedules" if "cron" in body else "services/scheduler/api/runs"
    with pytest.raises(ClientError) as refused:
        alice.request("POST", path, body)
    assert refused.value.status == 400 and message in refused.value.message, refused.value.message
