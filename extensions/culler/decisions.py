"""Idle culling decisions (pure): per-profile timeouts, and GPUs that must be quiet too.

A server is idle when nothing happened in it for its profile's idle_timeout (the hub's
last_activity, which the server updates from kernel and API activity), none of its kernels
is busy, and, for a server holding GPUs, every utilisation sample of those GPUs over that
whole window stayed at or under the threshold. A long training cell that prints nothing
keeps its kernel busy and its GPU warm, so it is not culled.

For a server holding GPUs, the hub's last_activity is not the idle clock: a JupyterLab tab left
open polls the server and keeps that fresh all night, which is how GPUs stay held for nothing
(jupyterhub-idle-culler sees only that). Such a server is idle when no code ran in it (its
kernels' and terminals' own last activity, which polling does not touch) for the timeout,
no kernel is busy, and its GPUs stayed quiet. benchmarks/gpu_idle.py measures the difference.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ServerView:
    user: str
    name: str  # "" for the default server
    profile: str
    last_activity: datetime
    devices: tuple[str, ...] = ()
    started: datetime | None = None


@dataclass(frozen=True)
class Decision:
    cull: bool
    reason: str


def idle_for(server: ServerView, now: datetime) -> timedelta:
    return now - server.last_activity


def human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclass
class GpuHistory:
    """Utilisation samples per device, kept for as long as the longest timeout needs."""

    keep: timedelta
    samples: dict[str, deque] = field(default_factory=dict)
    since: datetime | None = None  # first sampling: no history covers the time before it

    def record(self, at: datetime, readings: dict[str, int]) -> None:
        if self.since is None:
            self.since = at
        for uuid, percent in readings.items():
            self.samples.setdefault(uuid, deque()).append((at, percent))
        for history in self.samples.values():
            while history and at - history[0][0] > self.keep:
                history.popleft()

    def busiest(self, uuids: tuple[str, ...], start: datetime) -> int | None:
        """Highest utilisation of `uuids` since `start`; None if nothing was measured."""
        values = [p for u in uuids for (t, p) in self.samples.get(u, ()) if t >= start]
        return max(values) if values else None

    def covers(self, start: datetime) -> bool:
        return self.since is not None and self.since <= start

    def quiet(self, uuids: tuple[str, ...], start: datetime, threshold: int) -> bool:
        """Observed since `start`, and no sample of `uuids` above `threshold`."""
        busiest = self.busiest(uuids, start)
        return self.covers(start) and (busiest is None or busiest <= threshold)


def decide(server: ServerView, timeout: int, now: datetime, kernels_busy: bool | None,
           history: GpuHistory, threshold: int, code_activity: datetime | None = None) -> Decision:
    """Whether to stop `server` now, and why (for the log).

    `code_activity`: when code last ran in the server (its kernels' and terminals' latest
    activity, or its start), where the culler asked; it decides for servers holding GPUs."""
    if timeout <= 0:
        return Decision(False, f"profile {server.profile!r} has no idle timeout")
    quiet = idle_for(server, now)
    window = timedelta(seconds=timeout)
    if quiet < window and server.devices and code_activity is not None and now - code_activity >= window:
        quiet = now - code_activity  # only an open tab's polling since: the GPUs decide below
    elif quiet < window:
        return Decision(False, f"active {human(quiet)} ago (timeout {human(window)})")
    if kernels_busy:
        return Decision(False, "a kernel is busy")
    if server.devices:
        start = now - window
        if not history.covers(start):
            return Decision(False, "GPU utilisation not observed over the whole window yet")
        busiest = history.busiest(server.devices, start)
        if busiest is not None and busiest > threshold:
            return Decision(False, f"GPU busy ({busiest}% > {threshold}%)")
        gpus = "GPU utilisation unknown" if busiest is None else f"GPUs at most {busiest}%"
        return Decision(True, f"idle for {human(quiet)}, kernels idle, {gpus}")
    return Decision(True, f"idle for {human(quiet)}, kernels idle")
