"""traefik, supervised: restarted by the hub when it dies, with every route back.

The same once-a-second check polls the hub's managed services (see service_watch).

jupyterhub-traefik-proxy starts traefik once and never looks at it again, so a traefik killed
(OOM, kill -9) leaves the hub unreachable, and a defunct child, until someone restarts the hub.
JupyterHub's own `ConfigurableHTTPProxy.check_running` does this for CHP; this is the same for
traefik, without patching either package.
"""

from __future__ import annotations

import time

from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from tornado.ioloop import PeriodicCallback
from traitlets import Any, Float

from .service_watch import poll_managed_services


class SupervisedTraefikProxy(TraefikFileProviderProxy):
    """`traefik_file`, plus a watch that restarts traefik and re-adds the hub's routes."""

    check_running_interval = Float(
        1.0,
        config=True,
        help="""Seconds between checks that traefik and the managed services are still running
        (default 1). A traefik that exited is reaped, started again and given every route the hub
        knows; a service that exited is started again by JupyterHub; e.g. 0.5.""",
    )

    _watch = Any(None)
    _last_seen_running = Float(0.0)

    async def start(self):
        await super().start()
        self._last_seen_running = time.monotonic()
        self._watch = PeriodicCallback(self._check, 1e3 * self.check_running_interval)
        self._watch.start()

    async def stop(self):
        if self._watch is not None:
            self._watch.stop()
        await super().stop()

    async def _check(self) -> None:
        await poll_managed_services(self.app, self.log)
        await self.check_running()

    async def check_running(self) -> None:
        """Restart traefik if it exited. Tornado never overlaps runs of one PeriodicCallback."""
        process = self.traefik_process
        if process is None or process.poll() is None:  # poll() also reaps a dead traefik
            self._last_seen_running = time.monotonic()
            return
        self.log.error("The proxy (traefik, pid %i) exited with status %s; restarting it",
                       process.pid, process.returncode)
        try:
            # The static and dynamic files are still in place, so the new traefik starts
            # with the routes of the old one; check_routes then adds whatever is missing.
            self._start_traefik()
            await self._wait_for_static_config()
            await self.check_routes(self.app.users, self.app._service_map)
        except Exception:
            # The next check tries again: the process we started, if any, is polled then.
            self.log.exception("Could not restart the proxy (traefik); trying again")
            return
        outage = time.monotonic() - self._last_seen_running
        self.log.warning("The proxy (traefik) is back as pid %i with every route; the outage lasted "
                         "at most %.1f s", self.traefik_process.pid, outage)
        self._last_seen_running = time.monotonic()
