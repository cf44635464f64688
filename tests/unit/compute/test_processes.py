"""compute/processes.py: children that exited are collected without waiting for the others.

Each check runs in a forked process of its own, so collecting "any child" never takes one of
the test process's."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from gpulab.compute.processes import drain, exited_children


def in_own_process(check) -> None:
    child = os.fork()
    if child == 0:
        try:
            code = 0 if check() else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_exited_children_yields_each_ended_child_once_and_never_waits_for_a_running_one():
    def check() -> bool:
        running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
        try:
            found: dict[int, int] = {}
            deadline = time.monotonic() + 10
            while ended.pid not in found and time.monotonic() < deadline:
                found.update(exited_children())  # returns at once while `running` runs
                time.sleep(0.05)
            return (os.waitstatus_to_exitcode(found[ended.pid]) == 3 and running.pid not in found
                    and ended.pid not in dict(exited_children()))  # collected once
        finally:
            running.kill()

    in_own_process(check)


def test_no_children_at_all_is_an_empty_answer():
    in_own_process(lambda: list(exited_children()) == [])


def test_drain_empties_a_non_blocking_pipe_and_returns():
    read, write = os.pipe2(os.O_NONBLOCK)
    try:
        os.write(write, b"\x11" * 10_000)
        drain(read)
        with pytest.raises(BlockingIOError):
            os.read(read, 1)
        drain(read)  # already empty: returns at once
    finally:
        os.close(read)
        os.close(write)
