"""Telling a process apart from a later one that reuses its pid (Linux).

A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat) never
changes; psutil's create_time() adds the wall-clock boot time, which moves when the clock
is adjusted, so comparing it made a live server look dead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass



def exited_children() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of each child of this process that has exited, without waiting."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return
        if pid == 0:  # children, none exited
            return
        yield pid, status


def drain(fd: int) -> None:
    """Read a non-blocking pipe empty (the wake-up pipe `signal.set_wakeup_fd` writes a byte to
    per signal, so a select loop hears SIGCHLD)."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:  # empty
        pass


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/<pid>/stat's fields from the third (the state) to the start time; None if there is no
    such process. (os.read: a third less time than open(), for a scan of every process.)"""
    try:
        descriptor = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        text = os.read(descriptor, 4096)
    except ProcessLookupError:  # it ended between the two calls
        return None
    finally:
        os.close(descriptor)
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return text[text.rindex(b")") + 2:].split(maxsplit=20)[:20]


def children_by_parent() -> dict[int, list[ProcessRef]]:
    """Every process on this machine under its parent's pid: one read of each one's /proc entry."""
    children: dict[int, list[ProcessRef]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat_fields(name)) is not None:
            children.setdefault(int(fields[1]), []).append(ProcessRef(int(name), int(fields[19])))
    return children


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None if there is no such process."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def same_process(pid: int, ticks: int | None) -> bool:
    """Whether `pid` is still the process that started at `ticks` (any process with it, if None)."""
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)


def ended(pid: int, ticks: int | None) -> bool:
    """Whether the process `pid` that started at `ticks` has ended: gone, replaced by a later one,
    or a zombie (ended, not yet reaped: an orphan's new parent, init or a container's first
    process, may take its time or never do it)."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] == b"Z" or (ticks is not None and int(fields[19]) != ticks)


@dataclass(frozen=True)
class ProcessRef:
    """One process, told apart from a later one with its pid; stored as text "pid:ticks"."""

    pid: int
    start_ticks: int | None

    @classmethod
    def of(cls, pid: int) -> "ProcessRef":
        return cls(pid, start_ticks(pid))

    @classmethod
    def parse(cls, text: str) -> "ProcessRef":
        pid, _, ticks = text.partition(":")
        return cls(int(pid), int(ticks) if ticks.isdigit() else None)

    def __str__(self) -> str:
        return f"{self.pid}:{self.start_ticks}"

    def running(self) -> bool:
        return same_process(self.pid, self.start_ticks)
