"""Sampling GPU utilisation into the usage ledger, attributed through the GPU ledger.

Every `interval` seconds: reconcile the GPU ledger (a holder that died ends its interval at its
last sighting), read utilisation and memory of every held device from the inventory (NVML),
add them to the open intervals and move their `seen_at` forward, all in one commit. Expired
intervals are pruned once an hour. The latest readings stay in memory for the metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from .inventory import GpuInventory
from .ledger import GpuClaim, Ledger
from .usage import Reading, UsageInterval, add_sample, close_intervals, open_intervals, prune

PRUNE_EVERY_SECONDS = 3600


def read_devices(inventory: GpuInventory, uuids: list[str]) -> dict[str, Reading]:
    utilization = inventory.utilization(uuids)
    memory = inventory.memory_used(uuids)
    return {u: Reading(utilization.get(u), memory.get(u)) for u in uuids if u in utilization or u in memory}


@dataclass(frozen=True)
class HeldDevice:
    """One held device's latest reading, with who holds it (what the metrics show)."""

    uuid: str
    owner: str
    purpose: str
    profile: str
    project: str
    reading: Reading


@dataclass
class UsageSampler:
    sessions: sessionmaker
    inventory: GpuInventory
    threshold: int  # percent at or under which a GPU counts as idle (the culler's threshold)
    retention_days: int = 0
    clock: Callable[[], float] = time.time
    ledger: Ledger | None = None
    latest: list[HeldDevice] = field(default_factory=list)
    _pruned_at: float = 0.0

    def __post_init__(self):
        if self.ledger is None:
            self.ledger = Ledger(self.sessions, clock=self.clock)

    def sample_once(self) -> list[HeldDevice]:
        assert self.ledger is not None  # (__post_init__)
        self.ledger.live_claims()  # drops dead holders and ends their intervals
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        with self.sessions.begin() as session:
            rows = open_intervals(session)
            claimed = set(session.scalars(select(GpuClaim.claim_id)))
            # an interval whose claim is gone without a release (an older gpulab) ends at its last sighting
            close_intervals(session, [r.claim_id for r in rows if r.claim_id not in claimed], None)
            rows = [r for r in rows if r.claim_id in claimed]
            readings = read_devices(self.inventory, sorted({d for r in rows for d in r.device_list}))
            for row in rows:
                add_sample(row, readings, now, self.threshold)
            self.latest = [held for row in rows for held in _held(row, readings)]
            if self.clock() - self._pruned_at >= PRUNE_EVERY_SECONDS:
                prune(session, now, self.retention_days)
                self._pruned_at = self.clock()
        return self.latest


def _held(row: UsageInterval, readings: dict[str, Reading]) -> list[HeldDevice]:
    return [HeldDevice(d, row.owner, row.purpose, row.profile, row.project, readings.get(d, Reading(None, None)))
            for d in row.device_list]
