"""TensorBoard processes inside a user's server: one per log folder, stopped when idle.

Each instance serves on a Unix socket in a private folder (see serve.py) with `--path_prefix`
set to the URL the Jupyter server proxies it at, `<base_url>tensorboard/<key>/`, so its pages,
static assets and data API all resolve behind the hub (tensorboard#1270, #5531). The key is a
hash of the folder's path: the same folder always gets the same URL and the same process.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gpulab.hub_config.services.errors import Conflict, Invalid, ServiceError

KEY_LENGTH = 12
STOP_GRACE_SECONDS = 5


class StartFailed(ServiceError):
    status = 502


def instance_key(logdir: Path) -> str:
    return hashlib.sha256(str(logdir).encode()).hexdigest()[:KEY_LENGTH]


def resolve_logdir(requested: str, default: str, root: Path) -> Path:
    """The folder a request names: "~" is the user's home, relative paths are relative to `root`."""
    text = requested.strip() or default
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = root / path
    return Path(os.path.normpath(path))


def tensorboard_command(python: str, socket_path: Path, logdir: Path, path_prefix: str) -> list[str]:
    return [python, "-m", "gpulab.extensions.tensorboard.serve", "--socket", str(socket_path),
            "--logdir", str(logdir), "--path_prefix", path_prefix.rstrip("/"),
            "--load_fast", "false"]  # the Rust data server would open a TCP port


@dataclass
class Instance:
    key: str
    logdir: Path
    socket_path: Path
    log_path: Path
    process: asyncio.subprocess.Process
    started_at: float
    last_activity: float
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def summary(self, url: str, now: float) -> dict:
        return {"key": self.key, "logdir": str(self.logdir), "url": url,
                "idle_seconds": round(now - self.last_activity), "running": self.running}


PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when the Jupyter server exits,
    however it exits (Linux). libc is loaded here, in the parent: the child only calls it."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return in_child


class TensorBoards:
    def __init__(self, base_url: str, idle_timeout: float, max_instances: int,
                 clock: Callable[[], float] = time.monotonic, python: str = sys.executable,
                 start_timeout: float = 90.0):
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.idle_timeout = idle_timeout
        self.max_instances = max_instances
        self.clock = clock
        self.python = python
        self.start_timeout = start_timeout
        self.instances: dict[str, Instance] = {}
        self._runtime_dir: Path | None = None
        self._lock = asyncio.Lock()
        self._preexec = _parent_death_signal()

    # ------------------------------------------------------------ addresses

    def url(self, key: str) -> str:
        return f"{self.base_url}tensorboard/{key}/"

    @property
    def runtime_dir(self) -> Path:
        if self._runtime_dir is None:  # private to this user (mode 0700), made on first use
            parent = os.environ.get("XDG_RUNTIME_DIR")
            self._runtime_dir = Path(tempfile.mkdtemp(prefix="gpulab-tensorboard-",
                                                      dir=parent if parent and os.access(parent, os.W_OK) else None))
        return self._runtime_dir

    # ------------------------------------------------------------ lifecycle

    async def open(self, logdir: Path) -> Instance:
        """The running instance for `logdir`, started if needed and ready to answer."""
        if not logdir.is_dir():
            raise Invalid(f"{logdir} is not a folder")
        key = instance_key(logdir)
        async with self._lock:
            instance = self.instances.get(key)
            if instance is not None and not instance.running:
                await self._forget(key)
                instance = None
            if instance is None:
                if len(self.instances) >= self.max_instances:
                    raise Conflict(
                        f"{self.max_instances} TensorBoards are running already (the most this server may run); "
                        "stop one first"
                    )
                instance = await self._start(key, logdir)
                self.instances[key] = instance
        await self._wait_ready(instance)
        instance.last_activity = self.clock()
        return instance

    def get(self, key: str) -> Instance | None:
        instance = self.instances.get(key)
        return instance if instance is not None and instance.running and instance.ready.is_set() else None

    def touch(self, key: str) -> None:
        instance = self.instances.get(key)
        if instance is not None:
            instance.last_activity = self.clock()

    async def stop(self, key: str) -> bool:
        async with self._lock:
            if key not in self.instances:
                return False
            await self._forget(key)
            return True

    async def stop_idle(self) -> list[str]:
        """Stop every instance idle for longer than the timeout (or no longer running)."""
        now = self.clock()
        stale = [key for key, i in self.instances.items()
                 if not i.running or (i.ready.is_set() and now - i.last_activity > self.idle_timeout)]
        for key in stale:
            await self.stop(key)
        return stale

    async def stop_all(self) -> None:
        for key in list(self.instances):
            await self.stop(key)
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)

    def terminate_now(self) -> None:
        """At exit, without an event loop: signal every instance and remove the private folder."""
        for instance in self.instances.values():
            if instance.running:
                instance.process.terminate()
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)

    def summaries(self) -> list[dict]:
        now = self.clock()
        return [i.summary(self.url(key), now) for key, i in sorted(self.instances.items(), key=lambda kv: str(kv[1].logdir))]

    # ------------------------------------------------------------ processes

    async def _start(self, key: str, logdir: Path) -> Instance:
        socket_path = self.runtime_dir / f"{key}.sock"
        log_path = self.runtime_dir / f"{key}.log"
        command = tensorboard_command(self.python, socket_path, logdir, self.url(key))
        with open(log_path, "wb") as log:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=self._preexec, start_new_session=True,
            )
        now = self.clock()
        return Instance(key, logdir, socket_path, log_path, process, now, now)

    async def _wait_ready(self, instance: Instance) -> None:
        if instance.ready.is_set():
            return
        deadline = time.monotonic() + self.start_timeout
        while not await asyncio.to_thread(_answers, instance.socket_path):
            if not instance.running or time.monotonic() > deadline:
                tail = _tail(instance.log_path)
                await self.stop(instance.key)
                raise StartFailed(f"TensorBoard for {instance.logdir} did not start: {tail or 'no output'}")
            await asyncio.sleep(0.1)
        instance.ready.set()

    async def _forget(self, key: str) -> None:
        instance = self.instances.pop(key)
        if instance.running:
            instance.process.terminate()
            try:
                await asyncio.wait_for(instance.process.wait(), STOP_GRACE_SECONDS)
            except asyncio.TimeoutError:
                instance.process.kill()
                await instance.process.wait()
        for path in (instance.socket_path, instance.log_path):
            path.unlink(missing_ok=True)


def _answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(socket_path))
            return True
        except OSError:
            return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
