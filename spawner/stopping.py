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

import psutil


def descendants(pid: int) -> list[psutil.Process]:
    """Every process `pid` started, and theirs (empty if `pid` is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL each process, and the process group each leads (a kernel's group holds what it
    started, even what was re-parented when its parent died). psutil checks that a pid is still
    the process it was, so a pid reused meanwhile is never hit."""
    for process in processes:
        try:
            leads_group = os.getpgid(process.pid) == process.pid
            process.kill()
            if leads_group:
                os.killpg(process.pid, signal.SIGKILL)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
