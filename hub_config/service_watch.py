"""Managed services, polled every second instead of every 30.

JupyterHub restarts a managed service that exits, but notices only at its spawner's next poll
(every 30 s, not configurable for services). Polling the same spawners more often sends a dead
service through JupyterHub's own path at once: its exit is logged and it is started again.
"""

from __future__ import annotations

import logging


async def poll_managed_services(app, log: logging.Logger) -> None:
    """Poll each managed service that JupyterHub itself is polling (i.e. meant to be running)."""
    for name, service in list(app._service_map.items()):
        spawner = getattr(service, "spawner", None)
        # No poll callback: not started yet, stopped on purpose (hub shutdown), or being restarted.
        if not service.managed or spawner is None or spawner._poll_callback is None:
            continue
        try:
            status = await spawner.poll_and_notify()  # a dead service's callback restarts it
        except Exception:  # one service must not stop the watch of the others (or of the proxy)
            log.exception("Could not poll service %s", name)
            continue
        if status is not None:
            log.warning("Service %s died (status %s) and is being started again", name, status)
