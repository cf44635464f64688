"""The GPU ledger on a real SQLite file: exclusive claims, races, reconciliation, quotas."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from gpulab.compute.claims import DevicesBusy, OverQuota
from gpulab.compute.inventory import Device
from gpulab.compute.ledger import UNATTACHED_GRACE_SECONDS, Ledger
from gpulab.compute.processes import start_ticks
from gpulab.compute.profiles import GpuRequest
from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade

DEVICES = [Device(f"GPU-{i}", "NVIDIA A100", 81920, "570.86.15", str(i)) for i in range(4)]


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    return url


def ledger_for(url, **kwargs) -> Ledger:
    return Ledger(make_session_factory(make_engine(url)), **kwargs)


def test_claims_are_exclusive_and_released(url):
    ledger = ledger_for(url)
    first = ledger.claim("alice", "server:alice/", GpuRequest(3), DEVICES)
    assert first.devices == ("GPU-0", "GPU-1", "GPU-2")
    with pytest.raises(DevicesBusy, match="not enough free devices for 2 × GPU"):
        ledger.claim("bob", "server:bob/", GpuRequest(2), DEVICES)
    ledger.release(first.claim_id)
    assert ledger.claim("bob", "server:bob/", GpuRequest(2), DEVICES).devices == ("GPU-0", "GPU-1")


def test_many_processes_racing_for_the_last_gpu_give_exactly_one_winner(url):
    ledger_for(url).claim("setup", "run:1", GpuRequest(3), DEVICES)
    results, barrier = [], threading.Barrier(8)

    def race(n):
        ledger = ledger_for(url)  # its own engine and connections, as another process has
        barrier.wait()
        try:
            results.append(("won", ledger.claim(f"user{n}", f"server:user{n}/", GpuRequest(1), DEVICES).devices))
        except DevicesBusy as refused:
            results.append(("lost", refused.message))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r[0] == "won"]
    assert len(results) == 8 and winners == [("won", ("GPU-3",))]
    assert all("not enough free devices" in r[1] for r in results if r[0] == "lost")


def test_claims_of_processes_that_died_are_dropped(url):
    ledger = ledger_for(url)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    claim = ledger.claim("alice", "server:alice/", GpuRequest(4), DEVICES)
    ledger.attach(claim.claim_id, holder.pid, start_ticks(holder.pid))
    with pytest.raises(DevicesBusy):
        ledger.claim("bob", "server:bob/", GpuRequest(1), DEVICES)
    holder.kill()
    holder.wait()
    assert ledger.claim("bob", "server:bob/", GpuRequest(1), DEVICES).devices == ("GPU-0",)


def test_a_reused_pid_is_not_mistaken_for_the_holder(url):
    ledger = ledger_for(url)
    claim = ledger.claim("alice", "server:alice/", GpuRequest(1), DEVICES)
    ledger.attach(claim.claim_id, os.getpid(), start_ticks(os.getpid()) - 1)  # same pid, another process
    assert ledger.live_claims() == []


def test_a_claim_whose_process_never_started_expires_after_the_grace_period(url):
    now = [datetime(2026, 11, 22, tzinfo=timezone.utc).timestamp()]
    ledger = ledger_for(url, clock=lambda: now[0])
    ledger.claim("alice", "server:alice/", GpuRequest(1), DEVICES)
    now[0] += UNATTACHED_GRACE_SECONDS - 1
    assert len(ledger.live_claims()) == 1
    now[0] += 2
    assert ledger.live_claims() == []


def test_the_quota_sees_live_claims_and_can_refuse(url):
    ledger = ledger_for(url)
    ledger.claim("alice", "run:7", GpuRequest(2), DEVICES)

    def at_most_two(held_by_owner, spent):
        held = held_by_owner.get("alice", 0)
        if held + 1 > 2:
            raise OverQuota(f"alice holds {held} of 2 GPUs")

    with pytest.raises(OverQuota, match="alice holds 2 of 2 GPUs"):
        ledger.claim("alice", "server:alice/", GpuRequest(1), DEVICES, check=at_most_two)
    assert len(ledger.live_claims()) == 2


def test_release_by_purpose(url):
    ledger = ledger_for(url)
    ledger.claim("alice", "server:alice/gpu", GpuRequest(2), DEVICES)
    ledger.release_purpose("server:alice/gpu")
    assert ledger.live_claims() == []


def test_process_identity_survives_odd_command_names(tmp_path):
    script = tmp_path / "a b) (c"
    script.write_text("import time; time.sleep(30)")
    child = subprocess.Popen([sys.executable, str(script)])
    try:
        ticks = start_ticks(child.pid)
        assert ticks and ticks == start_ticks(child.pid)
    finally:
        child.kill()
        child.wait()
    assert start_ticks(child.pid) is None
