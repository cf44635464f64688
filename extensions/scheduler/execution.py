"""One notebook executed with Papermill as `papermill IN OUT -k KERNEL --cwd DIR -p ...` would (the runner's core).

What it adds to Papermill: progress events, the wait for the slot once the kernel is warm, and
the partial notebook sent to the scheduler while it runs (at a cell's start, at most every
PARTIAL_EVERY_SECONDS) and when the run is stopped or timed out (SIGTERM), so a run that
never finishes keeps what it did, as Papermill's own output file does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from traitlets.config import Config

from gpulab.spawner.runtime_dir import kernel_manager_config

from .run_options import detach, working_directory
from .warm import kernel_of

PARTIAL_EVERY_SECONDS = 10.0
INJECTED_TAG = "injected-parameters"  # Papermill's tag on the cell it adds
ERROR_MARKER_TAG = "papermill-error-cell-tag"  # Papermill's tag on the "An Exception was encountered" cells


def _tags(cell: dict) -> list:
    return cell.get("metadata", {}).get("tags", []) or []


def input_cell_index(input_cells: list[dict], executed_cells: list[dict], executed_index: int) -> int | None:
    """The index in the input notebook of executed cell `executed_index` (None: Papermill's injected cell).

    Papermill executes the input minus its old error markers, with its parameters cell added
    (or an old one replaced); `executed_cells` must not hold the markers it adds on failure.
    """
    i = 0
    for j, cell in enumerate(executed_cells):
        while i < len(input_cells) and ERROR_MARKER_TAG in _tags(input_cells[i]):
            i += 1  # removed before execution
        added = INJECTED_TAG in _tags(cell) and (i >= len(input_cells) or INJECTED_TAG not in _tags(input_cells[i]))
        if j == executed_index:
            return None if added else i
        if not added:
            i += 1
    return None


def failed_cell(input_nb: dict, output_path: Path, error) -> dict:
    """A PapermillExecutionError as the user sees it: the input's cell index and the cell's `In [N]`."""
    try:
        executed = json.loads(output_path.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        executed = []
    executed = [cell for cell in executed if ERROR_MARKER_TAG not in _tags(cell)]
    return {"cell_index": input_cell_index(input_nb["cells"], executed, error.cell_index),
            "execution_count": error.exec_count, "ename": error.ename, "evalue": error.evalue,
            "traceback": error.traceback, "source": error.source}


class PartialNotebook:
    """Sends the notebook being executed (Papermill's live copy) to the scheduler now and then."""

    def __init__(self, upload: Callable[[bytes], None], clock: Callable[[], float] = time.monotonic):
        self.upload = upload
        self.clock = clock
        self.live: Any = None  # the NotebookNode nbclient executes
        self.last: float | None = None
        self.pending = False  # a cell ended since the last upload

    def started(self, notebook) -> None:
        self.live = notebook

    def cell_started(self) -> None:
        if self.pending and (self.last is None or self.clock() - self.last >= PARTIAL_EVERY_SECONDS):
            self.send()

    def cell_done(self) -> None:
        self.pending = True

    def send(self) -> None:
        if self.live is None:
            return
        import nbformat

        try:
            self.upload(nbformat.writes(self.live).encode())
        except Exception as error:  # a lost partial copy must not fail the run
            print(f"gpulab: could not send the partial notebook: {error}", file=sys.stderr)
        self.last, self.pending = self.clock(), False


def _failure(error: BaseException | str, seconds: float) -> tuple[str, dict, float]:
    if isinstance(error, str):
        return "FAILED", {"ename": "RunError", "evalue": error, "message": error}, seconds
    name = type(error).__name__
    return "FAILED", {"ename": name, "evalue": str(error), "message": f"{name}: {error}"}, seconds


def execute(spec: dict, reporter, workdir: Path, wait_until: Callable[[str | None], None],
            warm=None) -> tuple[str, dict | None, float]:
    """Run the notebook; (status, error details, seconds). workdir/output.ipynb is written as Papermill writes it.

    `warm`: a standby's started kernel (warm.WarmKernel). Papermill gets it (km=) when it is the
    kernel and folder this run would start (the caller stops it after, as nbclient stops its own
    at the end); otherwise it is stopped now and Papermill starts the run's kernel as usual."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    started = time.monotonic()
    notebook, options = detach(spec["notebook"])
    source, output = workdir / "input.ipynb", workdir / "output.ipynb"
    source.write_text(json.dumps(notebook))
    home = os.environ.get("HOME") or os.getcwd()
    cwd, asked = working_directory(options, home)
    if not os.path.isdir(cwd):
        if asked:  # Papermill fails the same way on a --cwd that is not there
            if warm is not None:
                warm.shutdown(now=True)
            return _failure(f"working directory {cwd} (--cwd) does not exist", time.monotonic() - started)
        cwd = home  # submitted from elsewhere (a laptop, another machine): the owner's home

    km = None
    if warm is not None:
        if warm.matches(kernel_of(notebook, options), cwd):
            km = warm.km
        else:
            warm.shutdown(now=True)
            warm = None

    cells = sum(1 for c in notebook["cells"] if c.get("cell_type") == "code")
    cells += 1 if spec["parameters"] else 0  # Papermill adds a cell with the injected parameters
    reporter.event(kind="progress", cells_done=0, cells_total=cells)
    done = {"cells": 0}
    # One try: a partial copy is not worth holding the run up while the scheduler is away
    partial = PartialNotebook(lambda data: reporter._call("PUT", "files/output.ipynb", data, "application/octet-stream"))

    async def kernel_ready(notebook):
        partial.started(notebook)
        reporter.event(kind="kernel_ready")
        # Started early so the kernel is warm: the first cell runs at the slot, not before.
        await asyncio.get_running_loop().run_in_executor(None, wait_until, spec.get("not_before"))

    def cell_started(cell, cell_index):
        partial.cell_started()

    def cell_done(cell, cell_index, execute_reply):
        done["cells"] += 1
        partial.cell_done()
        reporter.event(kind="progress", cells_done=done["cells"])

    def terminated(signum, frame):
        # Stopped or timed out by the scheduler: keep what ran, then go (the kernel gets its own SIGTERM)
        partial.send()
        os._exit(128 + signum)

    in_main = threading.current_thread() is threading.main_thread()  # only there can Python take signals
    previous = signal.signal(signal.SIGTERM, terminated) if in_main else None
    try:
        papermill.execute_notebook(str(source), str(output), parameters=spec["parameters"],
                                   config=Config(kernel_manager_config(os.environ)),  # private sockets
                                   kernel_name=options.kernel_name, cwd=cwd, progress_bar=False,
                                   # The cells' streams, as they come, are the run's log.txt (a pod's log).
                                   stdout_file=sys.stdout, stderr_file=sys.stderr, on_notebook_start=kernel_ready,
                                   on_cell_start=cell_started, on_cell_executed=cell_done,
                                   **({"km": km} if km is not None else {}))
        return "COMPLETED", None, time.monotonic() - started
    except PapermillExecutionError as error:
        return "FAILED", failed_cell(notebook, output, error), time.monotonic() - started
    except Exception as error:  # no such kernel, kernel died, bad notebook...: the run fails with the reason
        return _failure(error, time.monotonic() - started)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
