"""Runs as local processes, as the schedule's owner, from the environment's Python."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
from jupyterhub.spawner import set_user_setuid

from gpulab.compute.ledger import LocalPool
from gpulab.compute.limits import Limits, detect_limiter, join, profile_limits
from gpulab.compute.processes import ProcessRef
from gpulab.spawner.accounts import account_name, ensure_account, home_of
from gpulab.spawner.local import singleuser_bin_dir
from gpulab.spawner.runtime_dir import ensure_runtime_dir, private_kernel_environment

from .protocol import RunRequest

RUNNER = "gpulab.extensions.scheduler.runner"


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


def local_plan(request: RunRequest) -> LocalPlan:
    if request.nodes > 1:  # the scheduler refuses such jobs on this backend; never start half of one
        raise ValueError(f"a job on {request.nodes} nodes needs the Kubernetes backend")
    devices = request.claim.devices if request.claim else ()
    # An empty list hides every GPU: a CPU run must not see the machine's GPUs.
    env = {**request.env, "CUDA_VISIBLE_DEVICES": ",".join(devices)}
    return LocalPlan(request.run_id, request.owner, request.environment.local_python, env,
                     profile_limits(request.profile), request.log_path,
                     request.claim.claim_id if request.claim else "")


class LocalExecutor:
    """Runs as processes of their owners on this machine; GPUs from the ledger (see protocol.Executor)."""

    homes_here = True

    def __init__(self, settings: dict, log, pool: LocalPool, driver: Callable[[], str | None] = lambda: None,
                 on_exit=lambda: None):
        local = settings["spawner"]["local"]
        self.pool = pool
        self.driver = driver
        self.on_exit = on_exit  # called (from a thread) when a runner exits, so its end is noticed at once
        self.prefix = local["account_prefix"]
        self.home_root = local["home_root"]
        self.data_dir = settings["hub"]["data_dir"]
        self.log = log
        self.children: dict[int, subprocess.Popen] = {}

    async def prepare(self) -> None:
        """Nothing to find: runners are watched by their process reference."""

    def python_exists(self, python: str) -> bool:
        return (singleuser_bin_dir(python) / "python").exists()

    def parse_ref(self, text: str) -> ProcessRef:
        return ProcessRef.parse(text)

    def _home(self, owner: str) -> tuple[Path, str | None]:
        return owner_home(owner, self.prefix, self.home_root, self.data_dir)

    async def start(self, request: RunRequest) -> ProcessRef:
        plan = local_plan(request)
        home, account = self._home(plan.owner)
        private: dict = {}
        if account is not None:
            entry = await ensure_account(account, Path(self.home_root or "/home"))
            # Kernels on Unix sockets only the owner can reach (see spawner/runtime_dir.py).
            private = private_kernel_environment(ensure_runtime_dir(entry.pw_uid, entry.pw_gid))
        else:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        bin_dir = singleuser_bin_dir(plan.python)
        env = {
            "HOME": str(home), "USER": account or os.environ.get("USER", ""), "SHELL": "/bin/bash",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            **private,
            **plan.env,
        }
        cgroups = self._limits(plan)
        enter = join(cgroups)
        become = set_user_setuid(account) if account else (lambda: None)

        def preexec():
            enter()  # as root, before giving root up
            become()

        plan.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A session of its own, and no parent-death signal (fork clears the service's
        # PR_SET_PDEATHSIG): the runner outlives a restart of the scheduler or the hub.
        with open(plan.log_path, "ab") as log:
            process = subprocess.Popen([str(bin_dir / "python"), "-m", RUNNER], env=env, cwd=home, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
        self.children[process.pid] = process
        threading.Thread(target=self._watch, args=(process,), daemon=True).start()
        ref = ProcessRef.of(process.pid)
        if plan.claim_id:  # the claim now lives as long as the runner, even if the scheduler dies
            self.pool.attach(plan.claim_id, ref.pid, ref.start_ticks)
        return ref

    def _watch(self, process: subprocess.Popen) -> None:
        process.wait()
        self.on_exit()

    def _limits(self, plan: LocalPlan) -> list[Path]:
        if not plan.limits.any:
            return []
        limiter, enforced = detect_limiter()
        if limiter is None:
            self.log.warning("limits of run %s are not enforced: %s", plan.run_id, enforced)
            return []
        return limiter.prepare(f"run-{plan.run_id}", plan.limits)

    def exit_code(self, ref: ProcessRef) -> int | None:
        """None while the runner runs; its exit code after (-1 if it ended while we were not watching)."""
        child = self.children.get(ref.pid)
        if child is not None:
            code = child.poll()
            if code is not None:
                self.children.pop(ref.pid, None)
            return code
        return None if alive(ref) else -1

    def stop(self, ref: ProcessRef) -> None:
        """Stop the runner and everything it started (the kernel has a session of its own)."""
        if not ref.running():
            return
        pid = ref.pid
        try:
            processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(processes, timeout=5)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        child = self.children.pop(pid, None)
        if child is not None:
            child.wait()

    def cleanup(self, run_id: str) -> None:
        """After a run ended: its leftover processes (a killed runner's kernel lives on in a session
        of its own, and may hold the run's GPU) and its cgroup."""
        for process in leftovers(run_id):
            try:
                process.kill()
            except psutil.Error:
                pass
        limiter, _ = detect_limiter()
        if limiter is not None:
            limiter.remove(f"run-{run_id}")


def owner_home(owner: str, prefix: str, home_root: str, data_dir: str) -> tuple[Path, str | None]:
    """Where a run of `owner` starts, and the account it runs as (None: the service's own user,
    when gpulab does not run as root)."""
    if os.geteuid() == 0:
        account = account_name(owner, prefix)
        return home_of(account, Path(home_root or "/home")), account
    return Path(home_root or Path(data_dir, "homes")) / account_name(owner, ""), None


def leftovers(run_id: str) -> list[psutil.Process]:
    """Processes still carrying the run's address (the runner and what it started inherit it)."""
    mark = f"/{run_id}/"
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("GPULAB_RUN_URL", "").endswith(mark):
                found.append(process)
        except (psutil.Error, OSError):  # gone, or not ours to read
            pass
    return found


def alive(ref: ProcessRef) -> bool:
    """Whether the runner still runs. A runner whose scheduler died is reaped by init, or by
    nobody in a container: a zombie has ended."""
    if not ref.running():
        return False
    try:
        return psutil.Process(ref.pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gpulab_python() -> str:
    return str(Path(sys.executable).parent)
