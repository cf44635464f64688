"""Runs as local processes, as the schedule's owner, from the environment's Python (or, on the
docker backend, in a container of the environment's image: runner_container.py).

The executor plans a run, opens its log (as the service) and keeps its GPU claim alive for as
long as the runner; starting, stopping and cleaning up the runner process is the launcher's
(runner_process.Launcher): in this process when the hub is not root, else through the
scheduler's root helper (launcher.py), so the service itself never runs as root.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpulab.compute.ledger import LocalPool
from gpulab.compute.limits import Limits, profile_limits
from gpulab.compute.processes import ProcessRef
from gpulab.spawner.backends.local.spawner import singleuser_bin_dir

from gpulab.spawner.backends.protocol import RunRequest
from gpulab.spawner.backends.local.runner_process import UNSEEN_EXIT, Launcher, RunnerLaunch, alive, wait_unseen
from gpulab.spawner.backends.local.standby import HandedRef, StandbyKey, Standbys, parse_ref


WARM_AFTER = ("COMPLETED", "FAILED")  # runs after which the owner gets a standby for the next one


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
                 on_exit=lambda: None, in_images: bool = False, standbys: Standbys | None = None, log=None):
        self.launcher = launcher
        self.in_images = in_images  # the docker backend: each run in a container of its environment's image
        self.pool = pool
        self.driver = driver
        self.on_exit = on_exit  # called (from a thread) when a runner exits, so its end is noticed at once
        self.watched: set[int] = set()  # runners whose end a thread waits for
        self.exit_codes: dict[int, int] = {}
        self.standbys = standbys  # the warm path (standby.py); None: every run starts cold
        self.log = log or logging.getLogger("gpulab.scheduler")
        self.recent: dict[str, tuple[StandbyKey, dict]] = {}  # running runs that may call for a standby
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self.handed_pids: set[int] = set()  # standbys' processes that now run a run

    async def prepare(self) -> None:
        """Nothing to find: runners are watched by their process reference."""

    async def admit(self, profile, nodes: int) -> str | None:
        return None  # the ledger's claim is the whole admission on one machine

    def python_exists(self, python: str) -> bool:
        return self.in_images or (singleuser_bin_dir(python) / "python").exists()

    def parse_ref(self, text: str) -> ProcessRef:
        return parse_ref(text)

    async def start(self, request: RunRequest) -> ProcessRef:
        self._loop = asyncio.get_running_loop()
        plan = local_plan(request, self.in_images)
        plan.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = None  # notebooks only (a job has no kernel to start early)
        if self.standbys is not None and request.warm_hint:
            key = self.standbys.key_for(plan.launch(), request.claim is not None or request.profile.uses_gpu,
                                        request.nodes)
        if key is not None and self.standbys is not None:
            self.recent[request.run_id] = (key, request.warm_hint)
            standby = self.standbys.idle(key)
            if standby is not None and not plan.log_path.exists():
                os.rename(standby.log_path, plan.log_path)  # its output so far, and from now on, is the run's log
                handed = self.standbys.hand_over(standby, request.run_id, plan.env)
                if handed is not None:
                    self.handed_pids.add(handed.pid)
                    return handed
                os.rename(plan.log_path, standby.log_path)
        return await self._start_cold(plan)

    async def _start_cold(self, plan: LocalPlan) -> ProcessRef:
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

    # ------------------------------------------------------------ standbys

    def picked_up(self, run_id: str) -> None:
        if self.standbys is not None:
            self.standbys.picked_up(run_id)

    def lost_before_start(self, run_id: str, ref: ProcessRef) -> bool:
        return isinstance(ref, HandedRef) and self.standbys is not None and self.standbys.lost(run_id)

    def _call_for_standby(self, run_id: str) -> None:
        """After a run that could have used one: a standby for its owner's next run."""
        key_hint = self.recent.pop(run_id, None)
        if key_hint is None or self.standbys is None or self._loop is None or not self.standbys.wanted(key_hint[0]):
            return
        task = self._loop.create_task(self._start_standby(*key_hint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_standby(self, key: StandbyKey, hint: dict) -> None:
        assert self.standbys is not None
        standby, launch = self.standbys.new(key, hint)
        try:
            standby.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            log_fd = os.open(standby.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600)
            try:
                ref = await asyncio.to_thread(self.launcher.start, launch, log_fd)
            finally:
                os.close(log_fd)
        except Exception:  # noqa: BLE001 - runs start cold, as without standbys
            self.log.exception("could not start a standby runner for %s", key.owner)
            self.standbys.forget(standby.id)
            standby.log_path.unlink(missing_ok=True)
            return
        self.standbys.started(standby.id, ref)
        self.watched.add(ref.pid)
        threading.Thread(target=self._watch_standby, args=(standby.id, ref), daemon=True).start()
        self.log.info("standby %s for %s started (%s)", standby.id, key.owner, ref)

    def _watch_standby(self, standby_id: str, ref: ProcessRef) -> None:
        try:
            code = self.launcher.wait(ref)
        except Exception:  # noqa: BLE001 - the helper restarted: see it go ourselves
            code = wait_unseen(ref)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._standby_ended, standby_id, ref, code)

    def _standby_ended(self, standby_id: str, ref: ProcessRef, code: int) -> None:
        """On the loop: a standby's process ended; a run it held is watched like any runner."""
        assert self.standbys is not None
        standby = self.standbys.by_id.get(standby_id)
        if standby is not None and not standby.run_id:  # idle: expired, stopped, or killed
            self.standbys.forget(standby_id)
        if ref.pid in self.handed_pids:  # its run's end
            self.handed_pids.discard(ref.pid)
            self.exit_codes[ref.pid] = code
            self.watched.discard(ref.pid)
            self.on_exit()
            return
        self.watched.discard(ref.pid)
        standby_log = self.standbys.folder / f"{standby_id}.log"
        standby_log.unlink(missing_ok=True)
        task = asyncio.ensure_future(asyncio.to_thread(self._cleanup_quietly, standby_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cleanup_quietly(self, standby_id: str) -> None:
        try:
            self.launcher.cleanup(standby_id)  # its kernel, if it was killed, and its cgroup
        except Exception:  # noqa: BLE001
            self.log.warning("could not clean up after standby %s", standby_id, exc_info=True)

    def exit_code(self, ref: ProcessRef) -> int | None:
        """None while the runner runs; its exit code after (-1 if it ended while we were not watching)."""
        if ref.pid in self.exit_codes:
            return self.exit_codes.pop(ref.pid)
        if ref.pid in self.watched:
            return None
        return None if alive(ref) else UNSEEN_EXIT

    def stop(self, run_id: str, ref: ProcessRef) -> None:
        """Stop the runner and everything it started (the kernel has a session of its own)."""
        if isinstance(ref, HandedRef):
            try:
                self.launcher.stop(run_id, ref.process)
            except Exception:  # noqa: BLE001 - handed over, not yet marked as the run's: it carries the standby's id
                self.launcher.stop(ref.standby, ref.process)
        else:
            self.launcher.stop(run_id, ref)

    def cleanup(self, run_id: str, ref: ProcessRef | None = None, ended: str = "") -> None:
        self.launcher.cleanup(run_id)
        if isinstance(ref, HandedRef):
            self.launcher.cleanup(ref.standby)  # its cgroup, and its kernel if it was killed before the hand-over
        if ended in WARM_AFTER:
            self._call_for_standby(run_id)
        else:  # stopped or timed out: nothing more of the owner's is started
            self.recent.pop(run_id, None)
