"""The program that executes one run, as its owner, in the run's environment (`python -m ...runner`).

It fetches the notebook and parameters from the scheduler with the run's token, executes
them with Papermill (parameters injected into the `parameters` cell, typed), reports when
the kernel is ready and after every cell, waits for the slot when started early (prewarm),
and uploads the executed notebook (the scheduler renders its HTML) and, on failure, the
failing cell and traceback. The scheduler watches the process and enforces the whole-run timeout.
Environment: GPULAB_RUN_URL, GPULAB_RUN_TOKEN; MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN
make the run an MLflow run too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path


class Reporter:
    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def spec(self) -> dict:
        return self._call("GET", "spec")

    def event(self, **fields) -> None:
        self._call("POST", "events", json.dumps(fields).encode())

    def upload(self, name: str, data: bytes) -> None:
        self._call("PUT", f"files/{name}", data, "application/octet-stream")


def wait_until(moment: str | None) -> None:
    if moment:
        delay = (datetime.fromisoformat(moment) - datetime.now(timezone.utc)).total_seconds()
        if delay > 0:
            time.sleep(delay)


def execute(spec: dict, reporter: Reporter, workdir: Path) -> tuple[str, dict | None, float]:
    """Run the notebook; (status, error details, seconds). The executed notebook is written either way."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, output = workdir / "input.ipynb", workdir / "output.ipynb"
    source.write_text(json.dumps(spec["notebook"]))
    cells = sum(1 for c in spec["notebook"]["cells"] if c.get("cell_type") == "code")
    cells += 1 if spec["parameters"] else 0  # Papermill adds a cell with the injected parameters
    reporter.event(kind="progress", cells_done=0, cells_total=cells)
    done = {"cells": 0}

    async def kernel_ready(notebook):
        reporter.event(kind="kernel_ready")
        # Started early so the kernel is warm: the first cell runs at the slot, not before.
        await asyncio.get_running_loop().run_in_executor(None, wait_until, spec.get("not_before"))

    def cell_done(cell, cell_index, execute_reply):
        done["cells"] += 1
        reporter.event(kind="progress", cells_done=done["cells"])

    started = time.monotonic()
    try:
        papermill.execute_notebook(str(source), str(output), parameters=spec["parameters"], kernel_name="python3",
                                   cwd=os.environ.get("HOME", "."), progress_bar=False,
                                   # The cells' streams, as they come, are the run's log.txt (a pod's log).
                                   stdout_file=sys.stdout, stderr_file=sys.stderr,
                                   on_notebook_start=kernel_ready, on_cell_executed=cell_done)
        return "COMPLETED", None, time.monotonic() - started
    except PapermillExecutionError as error:
        return "FAILED", {"cell_index": error.cell_index, "execution_count": error.exec_count, "ename": error.ename,
                          "evalue": error.evalue, "traceback": error.traceback, "source": error.source}, \
            time.monotonic() - started
    except Exception as error:  # kernel died, bad notebook...: the run fails with the reason
        return "FAILED", {"ename": type(error).__name__, "evalue": str(error), "message": f"{type(error).__name__}: {error}"}, \
            time.monotonic() - started


def log_to_mlflow(spec: dict, status: str, seconds: float, output: Path) -> str | None:
    """The run as an MLflow run: parameters, status, duration, the executed notebook."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    from .run_tracking import MlflowRest, log_run

    client = MlflowRest(os.environ["MLFLOW_TRACKING_URI"], os.environ.get("MLFLOW_TRACKING_TOKEN", ""))
    # The scheduler names the experiment (the project's, or a private one of the owner's)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"scheduled: {spec['schedule']}"
    return log_run(client, experiment, spec, status, seconds, output)


def main() -> int:
    reporter = Reporter(os.environ["GPULAB_RUN_URL"], os.environ["GPULAB_RUN_TOKEN"])
    spec = reporter.spec()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gpulab-run-") as tmp:
        workdir = Path(tmp)
        status, error, seconds = execute(spec, reporter, workdir)
        output = workdir / "output.ipynb"
        if output.exists():
            reporter.upload("output.ipynb", output.read_bytes())  # the scheduler renders the HTML
        mlflow_run = None
        try:
            mlflow_run = log_to_mlflow(spec, status, seconds, output)
        except Exception as mlflow_error:  # MLflow being down must not fail the run itself
            print(f"gpulab: could not log the run to MLflow: {mlflow_error}", file=sys.stderr)
        reporter.event(kind="finished", status=status, error=error, mlflow_run_id=mlflow_run)
    return 0 if status == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
