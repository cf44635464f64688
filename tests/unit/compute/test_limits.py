"""CPU and memory limits through cgroups: the files (pure) and, as root, real enforcement."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from gpulab.compute.limits import Limits, detect_limiter, join, v1_files, v2_files


def test_v1_files():
    assert v1_files(Limits(cpu_limit=1.5, cpu_guarantee=0.5, memory_limit=4 * 10**9, memory_guarantee=10**9)) == {
        "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "150000", "cpu.shares": "512"},
        "memory": {"memory.limit_in_bytes": "4000000000", "memory.soft_limit_in_bytes": "1000000000"},
    }
    assert v1_files(Limits()) == {}


def test_v2_files():
    assert v2_files(Limits(cpu_limit=2, cpu_guarantee=0.5, memory_limit=8 * 2**30, memory_guarantee=2**30)) == {
        "cpu.max": "200000 100000", "cpu.weight": "50", "memory.max": str(8 * 2**30), "memory.low": str(2**30)}


@pytest.fixture
def limiter():
    limiter, why = detect_limiter()
    if limiter is None:
        pytest.skip(f"no cgroup limits on this machine: {why}")
    return limiter


@pytest.mark.root
def test_memory_limit_kills_a_process_that_allocates_past_it(limiter):
    name = f"test-{uuid.uuid4().hex[:8]}"
    folders = limiter.prepare(name, Limits(memory_limit=200 * 2**20))
    try:
        inside = subprocess.run([sys.executable, "-c", "x = bytearray(400 * 2**20); print('survived')"],
                                preexec_fn=join(folders), capture_output=True, text=True)
        assert inside.returncode == -9 and "survived" not in inside.stdout
        outside = subprocess.run([sys.executable, "-c", "x = bytearray(400 * 2**20); print('survived')"],
                                 capture_output=True, text=True)
        assert outside.stdout.strip() == "survived"
    finally:
        limiter.remove(name)
    assert not any(f.exists() for f in folders)


@pytest.mark.root
def test_cpu_limit_caps_a_busy_process(limiter):
    name = f"test-{uuid.uuid4().hex[:8]}"
    folders = limiter.prepare(name, Limits(cpu_limit=0.25))
    spin = ("import time\nwall = time.time(); cpu = time.process_time()\n"
            "while time.time() - wall < 1.5: pass\nprint((time.process_time() - cpu) / (time.time() - wall))")
    try:
        share = float(subprocess.run([sys.executable, "-c", spin], preexec_fn=join(folders),
                                     capture_output=True, text=True, check=True).stdout)
    finally:
        limiter.remove(name)
    assert share < 0.45  # a quarter of a core, with scheduler slack


def test_without_root_nothing_is_enforced_and_it_says_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    limiter, why = detect_limiter()
    assert limiter is None and "not running as root" in why
