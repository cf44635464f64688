"""CPU and memory limits for local servers, through cgroups.

Each server gets a cgroup under `<root>/<controller>/gpulab/` (cgroup v1) or
`<root>/gpulab/` (cgroup v2) before it starts; the server and every kernel it starts stay
in it. What the files mean:

| profile key       | cgroup v1                        | cgroup v2     |
|-------------------|----------------------------------|---------------|
| memory.limit      | memory.limit_in_bytes (OOM kill) | memory.max    |
| memory.guarantee  | memory.soft_limit_in_bytes       | memory.low    |
| cpu.limit         | cpu.cfs_quota_us / cfs_period_us | cpu.max       |
| cpu.guarantee     | cpu.shares (1024 per core)       | cpu.weight    |

Without root, or without a writable cgroup hierarchy, nothing is enforced and the limiter
says so (`describe()`); servers still get MEM_LIMIT and CPU_LIMIT in their environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .profiles import Profile

CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    cpu_limit: float | None = None
    cpu_guarantee: float | None = None
    memory_limit: int | None = None
    memory_guarantee: int | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.cpu_limit, self.cpu_guarantee, self.memory_limit, self.memory_guarantee))


def v1_files(limits: Limits) -> dict[str, dict[str, str]]:
    """controller -> file -> value, for cgroup v1 (pure)."""
    files: dict[str, dict[str, str]] = {"cpu": {}, "memory": {}}
    if limits.cpu_limit is not None:
        files["cpu"]["cpu.cfs_period_us"] = str(CFS_PERIOD_US)
        files["cpu"]["cpu.cfs_quota_us"] = str(int(limits.cpu_limit * CFS_PERIOD_US))
    if limits.cpu_guarantee is not None:
        files["cpu"]["cpu.shares"] = str(max(2, int(limits.cpu_guarantee * 1024)))
    if limits.memory_limit is not None:
        files["memory"]["memory.limit_in_bytes"] = str(limits.memory_limit)
    if limits.memory_guarantee is not None:
        files["memory"]["memory.soft_limit_in_bytes"] = str(limits.memory_guarantee)
    return {controller: f for controller, f in files.items() if f}


def v2_files(limits: Limits) -> dict[str, str]:
    """file -> value, for the unified cgroup v2 hierarchy (pure)."""
    files = {}
    if limits.cpu_limit is not None:
        files["cpu.max"] = f"{int(limits.cpu_limit * CFS_PERIOD_US)} {CFS_PERIOD_US}"
    if limits.cpu_guarantee is not None:
        files["cpu.weight"] = str(min(10_000, max(1, int(limits.cpu_guarantee * 100))))
    if limits.memory_limit is not None:
        files["memory.max"] = str(limits.memory_limit)
    if limits.memory_guarantee is not None:
        files["memory.low"] = str(limits.memory_guarantee)
    return files


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class CgroupLimiter:
    """Creates one cgroup per server and puts the server's process in it."""

    def __init__(self, root: Path, version: int, parent: str = "gpulab"):
        self.root = root
        self.version = version
        self.parent = parent

    def describe(self) -> str:
        return (f"cgroup v{self.version} under {self.root}: memory limits (OOM kill) and guarantees, "
                "CPU limits (CFS quota) and guarantees (weights)")

    def _dirs(self, name: str, limits: Limits) -> dict[Path, dict[str, str]]:
        name = safe_name(name)
        if self.version == 1:
            return {self.root / controller / self.parent / name: files for controller, files in v1_files(limits).items()}
        files = v2_files(limits)
        return {self.root / self.parent / name: files} if files else {}

    def prepare(self, name: str, limits: Limits) -> list[Path]:
        """Create the server's cgroups with their limits; returns the folders to join."""
        dirs = self._dirs(name, limits)
        if self.version == 2 and dirs:
            self._enable_v2_controllers()
        for folder, files in dirs.items():
            folder.mkdir(parents=True, exist_ok=True)
            for filename, value in files.items():
                (folder / filename).write_text(value)
        return list(dirs)

    def _enable_v2_controllers(self) -> None:
        parent = self.root / self.parent
        parent.mkdir(exist_ok=True)
        for folder in (self.root, parent):
            enabled = (folder / "cgroup.subtree_control").read_text().split()
            missing = [c for c in ("cpu", "memory") if c not in enabled]
            if missing:
                (folder / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))

    def remove(self, name: str) -> None:
        """Delete the server's cgroups once its processes are gone (a busy one stays)."""
        name = safe_name(name)
        candidates = ([self.root / c / self.parent / name for c in ("cpu", "memory")] if self.version == 1
                      else [self.root / self.parent / name])
        for folder in candidates:
            try:
                folder.rmdir()
            except OSError:
                pass


def join(folders: list[Path]) -> Callable[[], None]:
    """A preexec step (runs in the child, as root) that moves the new process into `folders`."""
    paths = [str(f / "cgroup.procs") for f in folders]

    def enter():
        for path in paths:
            with open(path, "w") as procs:
                procs.write(str(os.getpid()))

    return enter


def detect_limiter(root: Path = Path("/sys/fs/cgroup"), parent: str = "gpulab") -> tuple[CgroupLimiter | None, str]:
    """The limiter this machine supports, with a sentence saying what is enforced."""
    if os.geteuid() != 0:
        return None, "nothing: gpulab is not running as root, so it cannot create cgroups"
    controllers = root / "cgroup.controllers"
    if controllers.exists() and {"cpu", "memory"} <= set(controllers.read_text().split()):
        limiter = CgroupLimiter(root, 2, parent)
    elif (root / "memory" / "memory.limit_in_bytes").exists() and (root / "cpu" / "cpu.cfs_quota_us").exists():
        limiter = CgroupLimiter(root, 1, parent)
    else:
        return None, f"nothing: no cgroup v1 or v2 memory and cpu controllers under {root}"
    if not os.access(root / ("memory" if limiter.version == 1 else ""), os.W_OK):
        return None, f"nothing: {root} is not writable (a read-only cgroup mount)"
    return limiter, limiter.describe()


def profile_limits(profile: Profile) -> Limits:
    return Limits(profile.cpu_limit, profile.cpu_guarantee, profile.memory_limit, profile.memory_guarantee)
