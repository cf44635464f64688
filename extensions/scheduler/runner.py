"""The program that executes one run, as its owner, in the run's environment (`python -m ...runner`).

It fetches the notebook and parameters from the scheduler with the run's token, executes
them with Papermill (parameters injected into the `parameters` cell, typed), reports when
the kernel is ready and after every cell, waits for the slot when started early (prewarm),
and uploads the executed notebook (the scheduler renders its HTML) and, on failure, the
failing cell and traceback. The scheduler watches the process and enforces the whole-run timeout.
It outlives a restart of the scheduler or the hub (it runs in a session of its own, with no
parent-death signal) and keeps its result until a scheduler takes it.
A job (a script or a command) runs instead in an unpacked snapshot (job_execution.py); its
exit status and the files it leaves in outputs/ are handed over the same way. In a
multi-node job every pod runs a runner: only node 0 (NODE_RANK) reports and hands over.
Environment: GPULAB_RUN_URL, GPULAB_RUN_TOKEN, GPULAB_RUN_DELIVER_SECONDS (how long to keep
trying to hand over the result); MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN
make the run an MLflow run too. With GPULAB_STANDBY_URL instead, it is a standby (warm.py): it
starts a kernel first and gets those variables when the scheduler hands it a run.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path


DEFAULT_DELIVER_SECONDS = 3600.0
MAX_BACKOFF_SECONDS = 30.0


def retryable(error: Exception) -> bool:
    """Worth trying again: the scheduler is restarting, unreachable or overloaded (not a refusal)."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code in (408, 429)
    return isinstance(error, (urllib.error.URLError, OSError, ValueError))  # ValueError: a cut-off reply


class Reporter:
    """Talks to the scheduler with the run's token.

    The scheduler (or the hub that runs it) may restart while the run executes: the spec and
    the result (executed notebook, outcome) are retried with backoff until `deadline`
    (time.monotonic()), so the run's result is kept until a scheduler takes it. Progress
    reports are best effort: one try, and the run goes on.
    """

    def __init__(self, url: str, token: str, deadline: float, sleep=time.sleep, clock=time.monotonic):
        self.url = url
        self.token = token
        self.deadline = deadline
        self.sleep = sleep
        self.clock = clock

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json",
              timeout: float = 60):
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def _until_deadline(self, method: str, path: str, body: bytes | None = None,
                        content_type: str = "application/json"):
        delay = 0.5
        while True:
            try:
                return self._call(method, path, body, content_type)
            except Exception as error:
                if not retryable(error) or self.clock() + delay > self.deadline:
                    raise
                print(f"gpulab: {method} {path}: the scheduler is not reachable ({error}); "
                      f"trying again in {delay:.1f}s", file=sys.stderr, flush=True)
            self.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def spec(self) -> dict:
        return self._until_deadline("GET", "spec")

    def event(self, **fields) -> None:
        body = json.dumps(fields).encode()
        if fields.get("kind") == "finished":
            self._until_deadline("POST", "events", body)
            return
        try:
            self._call("POST", "events", body, timeout=10)
        except Exception as error:  # progress is shown when the scheduler is back; the run goes on
            if not retryable(error):
                raise
            print(f"gpulab: progress not reported ({error})", file=sys.stderr, flush=True)

    def upload(self, name: str, data: bytes) -> None:
        self._until_deadline("PUT", f"files/{name}", data, "application/octet-stream")

    def upload_artifact(self, path: str, data: bytes) -> None:
        self._until_deadline("PUT", f"artifacts/{urllib.parse.quote(path)}", data, "application/octet-stream")

    def snapshot(self) -> bytes:
        """The job's snapshot (raw bytes, retried like the spec)."""
        delay = 0.5
        while True:
            request = urllib.request.Request(self.url + "snapshot", headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    return response.read()
            except Exception as error:
                if not retryable(error) or self.clock() + delay > self.deadline:
                    raise
            self.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


def wait_until(moment: str | None) -> None:
    if moment:
        delay = (datetime.fromisoformat(moment) - datetime.now(timezone.utc)).total_seconds()
        if delay > 0:
            time.sleep(delay)


def execute(spec: dict, reporter: Reporter, workdir: Path, warm=None) -> tuple[str, dict | None, float]:
    """Run the notebook; (status, error details, seconds). The executed notebook is written either way."""
    from .execution import execute as execute_with_papermill

    return execute_with_papermill(spec, reporter, workdir, wait_until, warm)


def log_to_mlflow(spec: dict, status: str, seconds: float, artifacts: list[tuple[str, Path]],
                  metrics: dict | None = None, params: dict | None = None) -> str | None:
    """The run as an MLflow run: parameters, status, duration, the executed notebook or the job's outputs."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    from .run_tracking import MlflowRest, log_run

    client = MlflowRest(os.environ["MLFLOW_TRACKING_URI"], os.environ.get("MLFLOW_TRACKING_TOKEN", ""))
    # The scheduler names the experiment (the project's, or a private one of the owner's)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"scheduled: {spec['schedule']}"
    return log_run(client, experiment, spec, status, seconds, artifacts, metrics, params)


ARTIFACTS_LIMIT_BYTES = 256 << 20  # what a job hands over from outputs/ (MLflow and the scheduler keep it)


def run_job(spec: dict, reporter: Reporter, workdir: Path) -> int:
    """A job: the command in its snapshot; node 0 hands over exit status, outputs/ and the MLflow run."""
    from .job_execution import artifacts_of, execute as execute_job

    status, error, seconds, code = execute_job(spec, reporter.snapshot(), workdir)
    if os.environ.get("NODE_RANK", "0") != "0":
        return code  # the Job's status says how the other nodes ended; node 0 reports for the run
    kept, total = [], 0
    for name in artifacts_of(workdir):
        size = (workdir / name).stat().st_size
        if total + size > ARTIFACTS_LIMIT_BYTES:
            print(f"gpulab: {name} not kept: the job's artifacts pass {ARTIFACTS_LIMIT_BYTES >> 20} MiB",
                  file=sys.stderr, flush=True)
            continue
        try:
            reporter.upload_artifact(name, (workdir / name).read_bytes())
        except Exception as refused:  # one refused file (too big for the service) does not lose the result
            print(f"gpulab: {name} not kept: {refused}", file=sys.stderr, flush=True)
            continue
        kept.append((name, workdir / name))
        total += size
    mlflow_run = None
    try:
        mlflow_run = log_to_mlflow(spec, status, seconds, kept, {"exit_code": code},
                                   {"command": " ".join(spec["command"])})
    except Exception as mlflow_error:  # MLflow being down must not fail the job itself
        print(f"gpulab: could not log the job to MLflow: {mlflow_error}", file=sys.stderr)
    reporter.event(kind="finished", status=status, error=error, mlflow_run_id=mlflow_run, exit_code=code)
    return code


def main(warm=None) -> int:
    """One run; `warm`: a standby's kernel (warm.py), used if the run's kernel and folder match."""
    deliver = float(os.environ.get("GPULAB_RUN_DELIVER_SECONDS") or DEFAULT_DELIVER_SECONDS)
    reporter = Reporter(os.environ["GPULAB_RUN_URL"], os.environ["GPULAB_RUN_TOKEN"], time.monotonic() + deliver)
    spec = reporter.spec()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gpulab-run-") as tmp:
        workdir = Path(tmp)
        if spec.get("kind", "notebook") != "notebook":
            if warm is not None:
                warm.shutdown(now=True)
            return min(run_job(spec, reporter, workdir), 255)
        status, error, seconds = execute(spec, reporter, workdir, warm)
        output = workdir / "output.ipynb"

        def send_outputs() -> str | None:
            if output.exists():
                reporter.upload("output.ipynb", output.read_bytes())  # the scheduler renders the HTML
            try:
                return log_to_mlflow(spec, status, seconds, [(output.name, output)])
            except Exception as mlflow_error:  # MLflow being down must not fail the run itself
                print(f"gpulab: could not log the run to MLflow: {mlflow_error}", file=sys.stderr)
                return None

        if warm is None:
            mlflow_run = send_outputs()
        else:
            # The standby's kernel stops (gracefully, as nbclient stops the kernels it starts before
            # Papermill returns) while the outputs go; the run is reported once both are done.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as delivering:
                delivered = delivering.submit(send_outputs)
                warm.shutdown(now=False)
                mlflow_run = delivered.result()
        reporter.event(kind="finished", status=status, error=error, mlflow_run_id=mlflow_run)
    return 0 if status == "COMPLETED" else 1


def exit_now(code: int) -> None:
    """End without the interpreter's tear-down of Papermill's modules (tenths of a second the
    scheduler would wait for): the run is reported, the kernel stopped, the files closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if os.environ.get("GPULAB_STANDBY_URL"):
        from .warm import standby

        exit_now(standby(main))
    exit_now(main())
