"""compute/processes.py: children that exited are collected without waiting for the others; a
zombie counts as ended.

Each check runs in a forked process of its own, so collecting "any child" never takes one of
the test process's."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from gpulab.compute.processes import drain, ended, exited_children, same_process, start_ticks


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


def test_ended_counts_a_zombie_a_reaped_pid_and_a_reused_one_as_ended_and_a_live_process_not():
    child = subprocess.Popen(["sleep", "60"])
    ticks = start_ticks(child.pid)
    try:
        assert not ended(child.pid, ticks) and not ended(child.pid, None)
        assert ended(child.pid, ticks + 1)  # another process that got the same pid later
        child.kill()
        wait_for_state(child.pid, "Z")  # killed, not yet reaped: a zombie has ended
        assert same_process(child.pid, ticks) and ended(child.pid, ticks)
    finally:
        child.kill()
        child.wait()
    assert ended(child.pid, ticks)  # reaped: gone


def wait_for_state(pid: int, state: str) -> None:
    for _ in range(200):
        if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == state:
            return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} never reached state {state}")
