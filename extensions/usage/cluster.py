"""Sampling a Kubernetes cluster into the usage ledger: pods' GPUs, with DCGM's readings where configured.

Every sample lists the pods of gpulab's namespace and, where `usage.dcgm_exporter_url` is set,
reads the DCGM exporter, then in one commit: opens an interval for each running pod that holds
GPUs (pods.py; it starts when first seen running), adds the readings of its devices and moves
its `seen_at` forward, and ends the interval of a pod that ended or is gone at its last
sighting. An interval is keyed by its pod's uid, so a restarted service continues the open
ones instead of opening them twice. A pod that starts and ends between two samples is not
seen, and one sample interval of each pod's start may be missed. Without DCGM the intervals
hold allocation only (GPU-hours held, no busy or idle split).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.orm import sessionmaker

from gpulab.compute.usage import Reading, add_sample, close_intervals, open_interval, open_intervals, prune
from gpulab.compute.usage_sampler import PRUNE_EVERY_SECONDS, HeldDevice

from .dcgm import PodKey, pod_readings
from .pods import CLAIM_PREFIX, PodHolding, running_holdings

SCRAPE_SECONDS = 5
log = logging.getLogger("gpulab.usage")

Readings = dict[PodKey, dict[str, Reading]]


def held_devices(holdings: dict[str, PodHolding], readings: Readings) -> list[HeldDevice]:
    """What the metrics and the live table show: each pod's devices as DCGM names them, or
    "<pod>/<n>" for each GPU it holds where DCGM names none (allocation only)."""
    held = []
    for holding in holdings.values():
        devices = readings.get((holding.namespace, holding.pod)) or {
            f"{holding.pod}/{n}": Reading(None, None) for n in range(holding.gpus)}
        held += [HeldDevice(device, holding.owner, holding.purpose, holding.profile, holding.project, reading)
                 for device, reading in sorted(devices.items())]
    return held


@dataclass
class ClusterUsage:
    sessions: sessionmaker
    threshold: int  # percent at or under which a GPU counts as idle (the culler's threshold)
    list_pods: Callable[[], Awaitable[list[dict]]]
    read_dcgm: Callable[[], Awaitable[Readings]] | None = None  # None: utilisation is not measured
    retention_days: int = 0
    clock: Callable[[], float] = time.time
    latest: list[HeldDevice] = field(default_factory=list)
    _pruned_at: float = 0.0

    async def sample_once(self) -> list[HeldDevice]:
        pods = await self.list_pods()
        readings = await self.read_dcgm() if self.read_dcgm else {}
        return await asyncio.to_thread(self.record, pods, readings)

    def record(self, pods: list[dict], readings: Readings) -> list[HeldDevice]:
        """Bring the pods' intervals up to date with one listing of `pods` (one commit)."""
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        running = running_holdings(pods)
        with self.sessions.begin() as session:
            rows = [r for r in open_intervals(session) if r.claim_id.startswith(CLAIM_PREFIX)]
            close_intervals(session, [r.claim_id for r in rows if r.claim_id not in running], None)
            for row in rows:
                if (holding := running.get(row.claim_id)) is not None:
                    devices = readings.get((holding.namespace, holding.pod), {})
                    if devices:
                        row.devices = ",".join(sorted(devices))
                    add_sample(row, devices, now, self.threshold)
            continued = {r.claim_id for r in rows}
            for claim_id, holding in running.items():
                if claim_id not in continued:
                    open_interval(session, claim_id, holding.owner, holding.purpose,
                                  sorted(readings.get((holding.namespace, holding.pod), {})), now,
                                  holding.profile, holding.project, holding.cpus, gpus=holding.gpus)
            if self.clock() - self._pruned_at >= PRUNE_EVERY_SECONDS:
                prune(session, now, self.retention_days)
                self._pruned_at = self.clock()
        self.latest = held_devices(running, readings)
        return self.latest


async def scrape_dcgm(session: aiohttp.ClientSession, url: str) -> Readings:
    """Every exporter behind `url`: each address its host name resolves to is read (a headless
    Service over the exporter's DaemonSet resolves to every node's exporter; a plain Service
    would answer from one node at a time)."""
    parts = urlsplit(url)
    port = parts.port or 80
    found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    readings: Readings = {}
    for address in sorted({str(info[4][0]) for info in found}):
        host = f"[{address}]" if ":" in address else address
        target = parts._replace(netloc=f"{host}:{port}").geturl()
        try:
            async with session.get(target, headers={"Host": parts.netloc},
                                   timeout=aiohttp.ClientTimeout(total=SCRAPE_SECONDS)) as response:
                response.raise_for_status()
                readings.update(pod_readings(await response.text()))
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:  # one node's exporter: the others still count
            log.warning("DCGM exporter at %s (%s) did not answer: %s", url, address, error)
    return readings
