"""Runs as local processes, as the schedule's owner, from the environment's Python (or, on the
docker backend, in a container of the environment's image: runner_container.py).

The executor plans a run, opens its log (as the service) and keeps its GPU claim alive for as
long as the runner; starting, stopping and cleaning up the runner process is the launcher's
(runner_process.Launcher): in this process when the hub is not root, else through the
scheduler's root helper (launcher.py), so the service itself never runs as root.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpulab.compute.ledger import LocalPool
from gpulab.compute.limits import Limits, profile_limits
from gpulab.compute.processes import ProcessRef
from gpulab.spawner.local import singleuser_bin_dir

from .protocol import RunRequest
from .runner_process import UNSEEN_EXIT, Launcher, RunnerLaunch, alive, wait_unseen


@dataclass(frozen=True)
class LocalPlan:
    """A run as a local process of its owner (pure, from the RunRequest)."""

    run_id: str
    owner: str
    python: str  # the environment's Python ("" = gpulab's own)
    env: dict  # the runner's variables, with the GPUs it may see
    limits: Limits
    log_path: Path
    claim_id: str  # the ledger's claim that lives as long as the runner ("" if none)
    image: str = ""  # the environment's image, on the docker backend

    def launch(self) -> RunnerLaunch:
        return RunnerLaunch(self.run_id, self.owner, self.python, self.env, self.limits, self.image)


def local_plan(request: RunRequest, in_images: bool = False) -> LocalPlan:
    if request.nodes > 1:  # the scheduler refuses such jobs on this backend; never start half of one
        raise ValueError(f"a job on {request.nodes} nodes needs the Kubernetes backend")
    devices = request.claim.devices if request.claim else ()
    # An empty list hides every GPU: a CPU run must not see the machine's GPUs.
    env = {**request.env, "CUDA_VISIBLE_DEVICES": ",".join(devices)}
    return LocalPlan(request.run_id, request.owner, "" if in_images else request.environment.local_python, env,
                     profile_limits(request.profile), request.log_path,
                     request.claim.claim_id if request.claim else "", request.environment.image if in_images else "")


class LocalExecutor:
    """Runs as processes of their owners on this machine; GPUs from the ledger (see protocol.Executor)."""

    homes_here = True

    def __init__(self, launcher: Launcher, pool: LocalPool, driver: Callable[[], str | None] = lambda: None,
                 on_exit=lambda: None, in_images: bool = False):
        self.launcher = launcher
        self.in_images = in_images  # the docker backend: each run in a container of its environment's image
        self.pool = pool
        self.driver = driver
        self.on_exit = on_exit  # called (from a thread) when a runner exits, so its end is noticed at once
        self.watched: set[int] = set()  # runners whose end a thread waits for
        self.exit_codes: dict[int, int] = {}

    async def prepare(self) -> None:
        """Nothing to find: runners are watched by their process reference."""

    async def admit(self, profile, nodes: int) -> str | None:
        return None  # the ledger's claim is the whole admission on one machine

    def python_exists(self, python: str) -> bool:
        return self.in_images or (singleuser_bin_dir(python) / "python").exists()

    def parse_ref(self, text: str) -> ProcessRef:
        return ProcessRef.parse(text)

    async def start(self, request: RunRequest) -> ProcessRef:
        plan = local_plan(request, self.in_images)
        plan.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_fd = os.open(plan.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            ref = await asyncio.to_thread(self.launcher.start, plan.launch(), log_fd)
        finally:
            os.close(log_fd)
        self.watched.add(ref.pid)
        threading.Thread(target=self._watch, args=(ref,), daemon=True).start()
        if plan.claim_id:  # the claim now lives as long as the runner, even if the scheduler dies
            self.pool.attach(plan.claim_id, ref.pid, ref.start_ticks)
        return ref

    def _watch(self, ref: ProcessRef) -> None:
        try:
            code = self.launcher.wait(ref)
        except Exception:  # noqa: BLE001 - the helper restarted: see the runner go ourselves
            code = wait_unseen(ref)
        self.exit_codes[ref.pid] = code
        self.watched.discard(ref.pid)
        self.on_exit()

    def exit_code(self, ref: ProcessRef) -> int | None:
        """None while the runner runs; its exit code after (-1 if it ended while we were not watching)."""
        if ref.pid in self.exit_codes:
            return self.exit_codes.pop(ref.pid)
        if ref.pid in self.watched:
            return None
        return None if alive(ref) else UNSEEN_EXIT

    def stop(self, run_id: str, ref: ProcessRef) -> None:
        """Stop the runner and everything it started (the kernel has a session of its own)."""
        self.launcher.stop(run_id, ref)

    def cleanup(self, run_id: str) -> None:
        self.launcher.cleanup(run_id)
