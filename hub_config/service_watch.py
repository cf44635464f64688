"""Managed services, polled every second instead of every 30.

JupyterHub restarts a managed service that exits, but notices only at its spawner's next poll
(every 30 s, not configurable for services). Polling the same spawners more often sends a dead
service through JupyterHub's own path at once: its exit is logged and it is started again.

A service that keeps dying (a bad setting, a missing file) would be started again every second,
with a log line each time: after its n-th death in a row the watch looks at it again only after
min(2^(n-1), 30) s (JupyterHub's own 30 s poll restarts it regardless). One that has run for
`STABLE_SECONDS` since its last death counts as healthy again.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

MAX_BACKOFF_SECONDS = 30.0  # JupyterHub's own poll of a service: waiting longer changes nothing
STABLE_SECONDS = 60.0


def backoff(deaths: int) -> float:
    """Seconds until the next look at a service that died `deaths` times in a row (pure)."""
    return min(2.0 ** (deaths - 1), MAX_BACKOFF_SECONDS)


@dataclass
class ServiceWatch:
    clock: Callable[[], float] = time.monotonic
    deaths: dict[str, int] = field(default_factory=dict)  # deaths in a row, per service
    last_death: dict[str, float] = field(default_factory=dict)
    next_look: dict[str, float] = field(default_factory=dict)

    async def poll(self, app, log: logging.Logger) -> None:
        """Poll each managed service that JupyterHub itself is polling (i.e. meant to be running)."""
        for name, service in list(app._service_map.items()):
            spawner = getattr(service, "spawner", None)
            # No poll callback: not started yet, stopped on purpose (hub shutdown), or being restarted.
            if not service.managed or spawner is None or spawner._poll_callback is None:
                continue
            now = self.clock()
            if now < self.next_look.get(name, -math.inf):
                continue
            try:
                status = await spawner.poll_and_notify()  # a dead service's callback restarts it
            except Exception:  # one service must not stop the watch of the others (or of the proxy)
                log.exception("Could not poll service %s", name)
                continue
            if status is None:
                if now - self.last_death.get(name, -math.inf) >= STABLE_SECONDS:
                    self.deaths.pop(name, None)
                continue
            deaths = self.deaths[name] = self.deaths.get(name, 0) + 1
            self.last_death[name] = now
            wait = backoff(deaths)
            self.next_look[name] = now + wait
            again = f" (death {deaths} in a row: next look in {wait:.0f} s)" if deaths > 1 else ""
            log.warning("Service %s died (status %s) and is being started again%s", name, status, again)
