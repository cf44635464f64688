"""Stopping a local server at once, with nothing of it left running.

JupyterHub's LocalProcessSpawner asks politely (SIGINT, 10 s; SIGTERM, 5 s; then SIGKILL),
and the server in turn asks each kernel to shut down and waits up to 5 s for it: a kernel busy
in a cell never answers, and the server's extensions (jupyter-collaboration) can hang its exit,
so a stop took about a minute, and a kernel's own children outlived it. Here the server gets
SIGTERM and a short grace to save what it holds (collaborative documents are written within a
second of each change); its kernels and everything they started, which have nothing to save,
are killed at once, by process and by process group.

What this does not catch: a process that detached itself completely (double fork into a new
session) before the stop. Without cgroup v2's `cgroup.kill` there is no handle on it.
"""

from __future__ import annotations

import os
import signal

from gpulab.compute.processes import ProcessRef, children_by_parent, start_ticks


def descendants(pid: int) -> list[ProcessRef]:
    """Every process `pid` started, and theirs (empty if `pid` is gone). One read of each process's
    /proc entry: psutil's children() took three times as long, in the hub, at every stop."""
    ticks = start_ticks(pid)
    if ticks is None:
        return []
    children = children_by_parent()
    found: list[ProcessRef] = []
    pending = [ProcessRef(pid, ticks)]
    while pending:
        parent = pending.pop()
        # a process that started before its parent has a pid reused since: not one of these
        mine = [c for c in children.get(parent.pid, []) if (c.start_ticks or 0) >= (parent.start_ticks or 0)]
        found += mine
        pending += mine
    return found


def kill_all(processes: list[ProcessRef]) -> None:
    """SIGKILL each process, and the process group each leads (a kernel's group holds what it
    started, even what was re-parented when its parent died). A pid whose process ended, or that
    another process took since, is left alone."""
    for process in processes:
        try:
            if not process.running():
                continue
            leads_group = os.getpgid(process.pid) == process.pid
            os.kill(process.pid, signal.SIGKILL)
            if leads_group:
                os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
