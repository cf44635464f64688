"""Scheduled runs in hub tests: a notebook made of cells, its outputs as text, a run started now and
waited for, its log and its owner's home, the scheduler's processes and whether it answers."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import nbformat
import psutil

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name
from tests.support.hub import RunningHub, services_of, wait_for


FINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "STOPPED")
SCHEDULER = "gpulab.extensions.scheduler.service"


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


def wait_run(client: HubClient, run_id: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (r := client.request("GET", f"services/scheduler/api/runs/{run_id}"))["status"] in FINAL and r,
                    timeout, f"run {run_id} to end")


def run_once(client: HubClient, nb: dict, **fields) -> dict:
    return client.request("POST", "services/scheduler/api/runs", {"name": "once", "notebook": nb, **fields})


def answers(client: HubClient) -> bool:
    try:
        client.request("GET", "services/scheduler/api/runs")
        return True
    except ClientError as error:
        if error.status < 500:
            raise
        return False  # the proxy's 502/503 while the service starts


def scheduler_pids(hub: RunningHub) -> list[int]:
    found = []
    for process in services_of(hub.process.pid):
        try:
            if SCHEDULER in " ".join(process.cmdline()):
                found.append(process.pid)
        except psutil.Error:  # the killed one, until the hub reaps it
            pass
    return found


def home_of(hub: RunningHub, user: str) -> Path:
    if os.geteuid() == 0:
        return Path(pwd.getpwnam(account_name(user, hub.settings["spawner"]["local"]["account_prefix"])).pw_dir)
    return hub.data_dir / "homes" / user


def run_log(hub: RunningHub, run_id: str) -> str:
    path = hub.data_dir / "scheduler" / "runs" / run_id / "log.txt"
    return path.read_text(errors="replace") if path.exists() else ""


def in_second_cell(client: HubClient, run_id: str) -> dict:
    return wait_for(lambda: (r := client.request("GET", f"services/scheduler/api/runs/{run_id}"))["cells_done"] >= 1
                    and r, 120, "the run's first cell")
