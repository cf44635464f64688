"""Starting, stopping and cleaning up a run's runner process on this machine, as its owner.

This is the part of the local executor that needs root when gpulab runs as root (an account
for the owner, cgroup limits, setuid, signals to the owner's processes, reading every
process's environment). `ProcessLauncher` does it in the process that calls it: the scheduler
service itself when the hub is not root (runs are then the service's own processes), else the
scheduler's root helper (launcher.py), which checks each request first. The service asks for
the same four things either way (`Launcher`).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import psutil

from gpulab.compute.limits import Limits, detect_limiter
from gpulab.compute.processes import ProcessRef, ended
from gpulab.spawner.accounts import account_name, ensure_account, home_of
from gpulab.spawner.backends.local.identity import become_step
from gpulab.spawner.backends.local.spawner import singleuser_bin_dir
from gpulab.spawner.runtime_dir import ensure_runtime_dir, private_kernel_environment

from gpulab.spawner.backends.docker.runner_container import ContainerEngine, remove_run_container, run_container_settings, wrapper_command

RUNNER = "gpulab.extensions.scheduler.runner"
UNSEEN_EXIT = -1  # the runner ended while nobody was watching it (a restart)


@dataclass(frozen=True)
class RunnerLaunch:
    """What starting one runner needs; the launcher adds the owner's home and account."""

    run_id: str
    owner: str
    python: str  # the environment's Python ("" = gpulab's own)
    env: dict  # the runner's variables (its URL and token, MLflow's, the GPUs it may see)
    limits: Limits
    image: str = ""  # the environment's image: the runner runs in a container of it (the docker backend)

    def to_json(self) -> dict:
        return {**asdict(self), "limits": asdict(self.limits)}


class Launcher(Protocol):
    def start(self, launch: RunnerLaunch, log_fd: int) -> ProcessRef:
        """Start the runner with stdout and stderr on `log_fd` (a file the service opened)."""

    def wait(self, ref: ProcessRef) -> int:
        """Block until the runner ends; its exit code (UNSEEN_EXIT if not ours to reap)."""

    def stop(self, run_id: str, ref: ProcessRef) -> None:
        """Stop the runner and everything it started."""

    def cleanup(self, run_id: str) -> None:
        """After the run ended: its leftover processes and its cgroup."""


def owner_home(owner: str, prefix: str, home_root: str, data_dir: str) -> tuple[Path, str | None]:
    """Where a run of `owner` starts, and the account it runs as (None: the service's own user,
    when gpulab does not run as root)."""
    if os.geteuid() == 0:
        account = account_name(owner, prefix)
        return home_of(account, Path(home_root or "/home")), account
    return Path(home_root or Path(data_dir, "homes")) / account_name(owner, ""), None


# Accounts are created once; the helper answers each request in a thread of its own.
_accounts_lock = threading.Lock()


class ProcessLauncher:
    """Runners as children of this process (see the module's docstring)."""

    def __init__(self, prefix: str, home_root: str, data_dir: str, log, engine: ContainerEngine | None = None):
        self.prefix, self.home_root, self.data_dir, self.log = prefix, home_root, data_dir, log
        self.engine = engine  # the docker backend's: runs with an image start in a container of it
        self.children: dict[int, subprocess.Popen] = {}

    def start(self, launch: RunnerLaunch, log_fd: int) -> ProcessRef:
        home, account = owner_home(launch.owner, self.prefix, self.home_root, self.data_dir)
        private: dict = {}
        if account is not None:
            with _accounts_lock:
                entry = asyncio.run(ensure_account(account, Path(self.home_root or "/home")))
        if launch.image:
            return self._start_container(launch, log_fd, home, account)
        if account is not None:
            # Kernels on Unix sockets only the owner can reach (see spawner/runtime_dir.py).
            private = private_kernel_environment(ensure_runtime_dir(entry.pw_uid, entry.pw_gid))
        else:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        bin_dir = singleuser_bin_dir(launch.python)
        env = {
            "HOME": str(home), "USER": account or os.environ.get("USER", ""), "SHELL": "/bin/bash",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            **private,
            **launch.env,
        }
        # The same step as a server's: its cgroups as root, then the owner's account
        preexec = become_step(account, str(home), self._limits(launch))
        # A session of its own, and no parent-death signal (fork clears PR_SET_PDEATHSIG): the
        # runner outlives a restart of the scheduler, its helper or the hub.
        process = subprocess.Popen([str(bin_dir / "python"), "-m", RUNNER], env=env, cwd=home, stdout=log_fd,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=preexec)
        self.children[process.pid] = process
        return ProcessRef.of(process.pid)

    def _start_container(self, launch: RunnerLaunch, log_fd: int, home: Path, account: str | None) -> ProcessRef:
        """The runner in a container of the environment's image, through a foreground process of
        this one's (runner_container.py) that the rest of this class treats as the runner."""
        if self.engine is None:
            raise RuntimeError("this launcher has no container engine (spawner.backend is not docker)")
        entry = pwd.getpwnam(account) if account else pwd.getpwuid(os.getuid())
        if account is None:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        devices = [uuid for uuid in launch.env.get("CUDA_VISIBLE_DEVICES", "").split(",") if uuid]
        container = run_container_settings(
            run_id=launch.run_id, image=launch.image, env={"USER": entry.pw_name, **launch.env}, limits=launch.limits,
            devices=devices, gpu_request=self.engine.gpu_request, uid=entry.pw_uid, gid=entry.pw_gid,
            groups=os.getgrouplist(entry.pw_name, entry.pw_gid), home=str(home),
            mounts=[path for path in self.engine.mounts if Path(path).is_dir()])
        process = subprocess.Popen(wrapper_command(sys.executable, launch.run_id), stdin=subprocess.PIPE,
                                   stdout=log_fd, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"})
        assert process.stdin is not None
        with process.stdin:
            process.stdin.write(json.dumps({"host": self.engine.host, "container": container}).encode())
        self.children[process.pid] = process
        return ProcessRef.of(process.pid)

    def _limits(self, launch: RunnerLaunch) -> list[Path]:
        if not launch.limits.any:
            return []
        limiter, enforced = detect_limiter()
        if limiter is None:
            self.log.warning("limits of run %s are not enforced: %s", launch.run_id, enforced)
            return []
        return limiter.prepare(f"run-{launch.run_id}", launch.limits)

    def wait(self, ref: ProcessRef) -> int:
        child = self.children.get(ref.pid)
        if child is not None:
            code = child.wait()
            self.children.pop(ref.pid, None)
            return code
        return wait_unseen(ref)  # started before a restart: init reaps it, we only see it go

    def stop(self, run_id: str, ref: ProcessRef) -> None:
        if not ref.running():
            return
        try:
            root = psutil.Process(ref.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, still_alive = psutil.wait_procs(processes, timeout=5)
        for process in still_alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass

    def cleanup(self, run_id: str) -> None:
        # A killed runner's kernel lives on in a session of its own, and may hold the run's GPU.
        for process in leftovers(run_id):
            try:
                process.kill()
            except psutil.Error:
                pass
        limiter, _ = detect_limiter()
        if limiter is not None:
            limiter.remove(f"run-{run_id}")
        if self.engine is not None:  # its foreground process removes it, unless it was killed
            remove_run_container(self.engine.host, run_id)


def run_mark(run_id: str) -> str:
    """The end of GPULAB_RUN_URL in the runner's environment, which what it starts inherits."""
    return f"/{run_id}/"


def carries_run(process: psutil.Process, run_id: str) -> bool:
    try:
        return process.environ().get("GPULAB_RUN_URL", "").endswith(run_mark(run_id))
    except (psutil.Error, OSError):  # gone, or not ours to read
        return False


def leftovers(run_id: str) -> list[psutil.Process]:
    """Processes still carrying the run's address."""
    return [process for process in psutil.process_iter() if carries_run(process, run_id)]


def wait_unseen(ref: ProcessRef) -> int:
    """Wait for a runner that is not our child to end."""
    while alive(ref):
        time.sleep(0.5)
    return UNSEEN_EXIT


def alive(ref: ProcessRef) -> bool:
    """Whether the runner still runs. A runner whose parent died is reaped by init, or by
    nobody in a container: a zombie has ended."""
    return not ended(ref.pid, ref.start_ticks)
