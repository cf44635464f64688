"""The hub `gpulab up` runs: stock JupyterHub, with its managed services started together.

JupyterHub's `start()` starts each service and waits until it answers (or `Service.timeout`
passes) before it starts the next, and only then adds its own route to the proxy: a hub with
the scheduler, MLflow, the SSH gateway, projects, usage and the culler answered its API
through the proxy after the sum of their start-ups (about 12 s of a 15 s restart on two
cores), although it had been listening since the first of them started.

`GpulabHub` overrides one public method, `start_service`, which `start()` calls once per
service, in order, after the hub listens. The first call

1. brings the proxy's routes up to date (`Proxy.check_routes`, as `start()` does after the
   services), so the API and every server kept through the restart answer while the services
   are still starting; it waits for that up to `ROUTES_FIRST_WAIT` seconds, since the
   services' start-ups (a Python process each, importing for seconds) would otherwise take
   the CPU the proxy and the hub need to register the routes;
2. starts every service at once (JupyterHub's own `start_service` for each, in a task);

and each call then waits for its service's task. `start()` goes on as before once all have
answered ("JupyterHub is now running" still means every service answered, or was logged
as not started).

Once running, the hub gets its default server ready (`_prewarm_default_server`): the local
backend starts its default environment's zygote, so the first spawn after a (re)start, through
the API as much as from the spawn form, is forked at once instead of waiting for the zygote to
import JupyterLab (~2 s on two cores).

At shutdown the managed services are stopped together too (`cleanup`): JupyterHub stops them one
after the other, each with SIGINT and a wait for its exit (about 5 s for seven); and traefik gets
its SIGTERM first, so that its grace for requests in flight runs meanwhile, not after them.

A managed service that does not start (its process exits, or it does not answer in its
`timeout`) is logged with its name, and the hub goes on without it instead of exiting as
stock JupyterHub does: the other services and every server stay up, and the service watch
(service_watch.py) starts the service again whenever its process exits.
"""

from __future__ import annotations

import asyncio
import ssl

from jupyterhub import orm
from jupyterhub.app import JupyterHub
from traitlets import Any

# Seconds the services wait for the proxy to route the hub and the running servers (usually
# well under one); past that they start anyway and the routes follow.
ROUTES_FIRST_WAIT = 5.0


class GpulabHub(JupyterHub):
    """JupyterHub whose managed services start together, after the proxy routes the hub."""

    _service_starts = Any(None)  # name -> task of JupyterHub's start_service, once started

    async def start(self) -> None:
        await super().start()
        self._prewarm_default_server()

    def _prewarm_default_server(self) -> None:
        """What a spawn form does before a spawn (ProfileSpawnerMixin.prewarm), once, for the default
        server of any user: the zygote is one per environment, not per user. No user yet: nothing
        (nobody can spawn before signing in, and the spawn form prewarms then)."""
        try:
            orm_user = self.db.query(orm.User).first()
            if orm_user is not None:
                getattr(self.users[orm_user].spawner, "prewarm", lambda: None)()
        except Exception:  # a warm start that cannot begin is reported at the first spawn
            self.log.exception("Could not get the default server ready ahead of the first spawn")

    async def cleanup(self) -> None:
        begin_proxy_stop = getattr(self.proxy, "begin_stop", None)  # the supervised traefik's
        if self.cleanup_proxy and self.proxy.should_start and begin_proxy_stop is not None:
            begin_proxy_stop()  # its grace for requests in flight runs while the services stop
        managed = [service for service in self._service_map.values() if service.managed]
        if managed:
            self.log.info("Stopping %i services together", len(managed))
            results = await asyncio.gather(*(service.stop() for service in managed), return_exceptions=True)
            for service, result in zip(managed, results):
                if isinstance(result, Exception):
                    self.log.error("Service %s did not stop cleanly: %s", service.name, result)
        await super().cleanup()  # its own stop of each service finds it stopped already

    async def start_service(self, service_name: str, service, ssl_context: ssl.SSLContext | None = None) -> bool:
        if self._service_starts is None:
            await self._route_hub_and_servers()
            self._service_starts = self._start_services_together(ssl_context)
        started = await self._service_starts[service_name]
        if not started and service.managed:
            self.log.critical(
                "Service %s did not start (see above); the hub and the other services go on without it, "
                "and it is started again when its process exits", service_name)
        return True  # never exit the hub for one service (stock JupyterHub exits for a managed one)

    async def _route_hub_and_servers(self) -> None:
        servers = sum(1 for user in self.users.values() for spawner in user.spawners.values() if spawner.ready)
        self.log.info("Routing the hub and %i running servers before the services start", servers)
        routing = asyncio.ensure_future(self.proxy.check_routes(self.users, self._service_map))
        try:
            await asyncio.wait_for(asyncio.shield(routing), ROUTES_FIRST_WAIT)
        except asyncio.TimeoutError:
            self.log.warning("The proxy has not routed the hub and the servers after %.0f s; starting the "
                             "services meanwhile", ROUTES_FIRST_WAIT)
            routing.add_done_callback(self._log_routing_failure)
        except Exception:  # start() checks the routes again once the services answer
            self.log.exception("Could not bring the proxy's routes up to date before starting the services")

    def _log_routing_failure(self, routing: asyncio.Future) -> None:
        if not routing.cancelled() and routing.exception() is not None:
            self.log.error("Could not bring the proxy's routes up to date", exc_info=routing.exception())

    def _start_services_together(self, ssl_context: ssl.SSLContext | None) -> dict[str, asyncio.Future]:
        services = dict(self._service_map)
        self.log.info("Starting %i services together: %s", len(services), ", ".join(services))
        return {name: asyncio.ensure_future(self._start_one(name, service, ssl_context))
                for name, service in services.items()}

    async def _start_one(self, name: str, service, ssl_context: ssl.SSLContext | None) -> bool:
        try:
            started = await super().start_service(name, service, ssl_context)
        except Exception:
            self.log.exception("Service %s could not be started", name)
            return False
        if started:
            self.log.info("Service %s answers", name)
        return started
