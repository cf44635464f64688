"""Finding and killing what a server started (spawner/stopping.py), on real processes: the same
processes psutil's children(recursive=True) finds, and nothing of them left after kill_all."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from gpulab.compute.processes import ProcessRef
from gpulab.spawner.stopping import descendants, kill_all

# A server stand-in: a child in its own session (as a kernel is) that starts a grandchild, and a
# plain child; each waits.
TREE = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                  "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"],
                 start_new_session=True)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("started", flush=True)
time.sleep(60)
"""


def wait_for_tree(root: psutil.Process, size: int) -> None:
    deadline = time.monotonic() + 30
    while len(root.children(recursive=True)) < size and time.monotonic() < deadline:
        time.sleep(0.05)


def test_descendants_are_psutils_and_kill_all_leaves_none_of_them():
    server = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root = psutil.Process(server.pid)
        wait_for_tree(root, 3)
        reference = {p.pid for p in root.children(recursive=True)}
        found = descendants(server.pid)
        assert {p.pid for p in found} == reference and len(reference) == 3
        assert bystander.pid not in reference and server.pid not in reference
        kill_all(found)
        deadline = time.monotonic() + 10
        while any(p.running() and psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE
                  for p in found if psutil.pid_exists(p.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in found if p.running() and psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE]
        assert server.poll() is None and bystander.poll() is None  # only what it started
    finally:
        for process in (server, bystander):
            process.kill()
            process.wait()


def test_a_gone_process_has_no_descendants_and_a_reused_pid_is_not_killed():
    assert descendants(2 ** 22 + 7) == []  # above any pid_max: no such process
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        other = ProcessRef(sleeper.pid, ProcessRef.of(sleeper.pid).start_ticks - 1)  # "an earlier process"
        kill_all([other])
        assert sleeper.poll() is None
        kill_all([ProcessRef.of(sleeper.pid)])
        assert sleeper.wait(10) == -9
    finally:
        sleeper.kill()
        sleeper.wait()
