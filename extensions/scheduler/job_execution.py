"""One job executed by the runner: its command in its snapshot, as `cd SNAPSHOT && COMMAND` would.

The command runs in a process group of its own with the runner's output (the run's log.txt
locally, the pod's log on Kubernetes), so `print` and a trainer's progress stream as they
come. When the scheduler stops the run (SIGTERM to the runner), the whole group gets
SIGTERM, then SIGKILL after STOP_GRACE_SECONDS: a trainer's workers and data loaders end
with it. Files the command leaves in `outputs/` are the job's artifacts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .snapshots import unpack

STOP_GRACE_SECONDS = 3.0  # the executor kills what is left after 5 s
OUTPUTS = "outputs"


def artifacts_of(folder: Path) -> list[str]:
    """The files under `folder`/outputs, as relative POSIX paths (links are not followed)."""
    root = folder / OUTPUTS
    if not root.is_dir() or root.is_symlink():
        return []
    found = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(current, d)))
        for name in sorted(files):
            path = Path(current, name)
            if path.is_file() and not path.is_symlink():
                found.append(path.relative_to(folder).as_posix())
    return found


def _end_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, 0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


def execute(spec: dict, snapshot: bytes, workdir: Path) -> tuple[str, dict | None, float, int]:
    """Unpack the snapshot into `workdir`, run the command there; (status, error, seconds, exit code)."""
    started = time.monotonic()
    unpack(snapshot, workdir)
    (workdir / OUTPUTS).mkdir(exist_ok=True)
    command = spec["command"]
    print(f"gpulab: running {' '.join(command)} in a snapshot of {spec.get('source') or 'the submitted folder'}",
          file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The run's token is the runner's, not the code's (a script that prints its environment
    # should not show it); GPULAB_RUN_URL stays: it marks the job's processes as the run's.
    env.pop("GPULAB_RUN_TOKEN", None)
    try:
        # Looked up as a shell does (an unreadable folder on PATH is skipped, not "permission denied")
        if "/" not in command[0] and shutil.which(command[0], path=env.get("PATH")) is None:
            raise FileNotFoundError(2, "command not found")
        process = subprocess.Popen(command, cwd=workdir, env=env, start_new_session=True)
    except OSError as error:  # not found, not executable: as a shell says it, with its status
        code = 127 if isinstance(error, FileNotFoundError) else 126
        message = f"cannot run {command[0]!r}: {error.strerror or error}"
        print(f"gpulab: {message}", file=sys.stderr, flush=True)
        return "FAILED", {"message": message}, time.monotonic() - started, code

    def terminated(signum, frame):
        _end_group(process)
        os._exit(128 + signum)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if in_main else None
    try:
        code = process.wait()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        _end_group(process)  # what the command left running in its group ends with it
    seconds = time.monotonic() - started
    if code == 0:
        return "COMPLETED", None, seconds, 0
    shown = code if code >= 0 else 128 - code  # a signal, as a shell reports it
    message = f"the command exited with status {shown}"
    return "FAILED", {"message": message}, seconds, shown
