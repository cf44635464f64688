"""The culler: a hub service that stops idle servers, profile by profile (decisions in decisions.py).

Every check it lists the ready servers through the hub API, samples the utilisation of the
GPUs each local server holds (NVML), asks a server about its kernels and terminals (busy? when
did code last run?) only when it is past its timeout or holds GPUs that stayed quiet for it,
and stops the servers `decide` says to.

Which GPUs a server holds comes from its server state in the same API answer (the spawner
keeps its claim's devices there; scope admin:server_state, read-only through the REST API),
not from gpulab's database: the culler runs as its own account (config.py), which
has no access to that database at all.

jupyterhub-idle-culler applies one timeout to every server and knows nothing of GPUs, so
gpulab has its own loop; it follows the same API conventions (state=ready, pagination).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from gpulab.compute.inventory import load_inventory
from gpulab.hub_config.services.lifetime import end_with_hub
from gpulab.hub_config.services.runner import configure_logging, service_settings
from gpulab.hub_config.client import ClientError, HubClient

from .decisions import Decision, GpuHistory, ServerView, decide
from .service_settings import CullerSettings

PAGE = 200


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Culler:
    def __init__(self, hub: HubClient, proxy: HubClient, settings: CullerSettings | Mapping[str, Any], log,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        settings = CullerSettings.of(settings)
        self.hub = hub
        self.proxy = proxy
        self.timeouts: Mapping[str, int] = settings.timeouts
        self.threshold = settings.gpu_utilization_threshold
        self.log = log
        self.clock = clock
        longest = max(self.timeouts.values(), default=0)
        self.history = GpuHistory(keep=timedelta(seconds=longest + 2 * settings.check_interval))
        # the local backend: utilisation from NVML (on Kubernetes no GPU is seen from here)
        self.inventory = load_inventory(settings.gpu_inventory) if settings.gpu_inventory else None

    def ready_servers(self) -> list[ServerView]:
        servers, offset = [], 0
        while True:
            users = self.hub.request("GET", f"hub/api/users?state=ready&limit={PAGE}&offset={offset}")
            for user in users:
                for name, server in (user.get("servers") or {}).items():
                    if not server.get("ready"):
                        continue
                    activity = parse_time(server.get("last_activity")) or parse_time(server.get("started"))
                    if activity is None:
                        continue  # (a ready server has a start time; without either, nothing says it is idle)
                    profile = (server.get("user_options") or {}).get("profile", "")
                    devices = tuple((server.get("state") or {}).get("devices") or ())
                    servers.append(ServerView(user["name"], name, profile, activity, devices,
                                              parse_time(server.get("started"))))
            if len(users) < PAGE:
                return servers
            offset += PAGE

    def work(self, server: ServerView) -> tuple[bool | None, datetime | None]:
        """(is a kernel busy, when code last ran: kernels', terminals' latest activity or the start);
        (None, None) when the server does not answer."""
        prefix = f"user/{server.user}/{server.name + '/' if server.name else ''}api/"
        try:
            kernels = self.proxy.request("GET", prefix + "kernels")
        except ClientError as error:
            self.log.warning("cannot ask %s's server about its kernels: %s", server.user, error)
            return None, None
        try:
            terminals = self.proxy.request("GET", prefix + "terminals")
        except ClientError:  # a server without terminals
            terminals = []
        moments = [parse_time(item.get("last_activity")) for item in [*kernels, *terminals]] + [server.started]
        known = [m for m in moments if m is not None]
        return any(k.get("execution_state") == "busy" for k in kernels), max(known) if known else None

    def check_once(self) -> list[tuple[ServerView, Decision]]:
        now = self.clock()
        servers = self.ready_servers()
        devices = sorted({d for s in servers for d in s.devices})
        if self.inventory is not None:
            self.history.record(now, self.inventory.utilization(devices))
        decisions = []
        for server in servers:
            timeout = self.timeouts.get(server.profile, 0)
            window = timedelta(seconds=timeout)
            overdue = timeout > 0 and now - server.last_activity >= window
            gpus_quiet = timeout > 0 and bool(server.devices) and \
                self.history.quiet(server.devices, now - window, self.threshold)
            busy, code_activity = self.work(server) if overdue or gpus_quiet else (False, None)
            decision = decide(server, timeout, now, busy, self.history, self.threshold, code_activity)
            decisions.append((server, decision))
            label = f"{server.user}/{server.name}" if server.name else server.user
            if decision.cull:
                self.log.info("culling %s (profile %s): %s", label, server.profile, decision.reason)
                path = f"hub/api/users/{server.user}/servers/{server.name}" if server.name else \
                    f"hub/api/users/{server.user}/server"
                try:
                    self.hub.request("DELETE", path)
                except ClientError as error:
                    self.log.warning("could not stop %s: %s", label, error)
            elif overdue or gpus_quiet:
                self.log.info("keeping %s (profile %s): %s", label, server.profile, decision.reason)
        return decisions


def main() -> None:
    import os

    settings = CullerSettings.of(service_settings())
    log = configure_logging("culler", settings.log_level)
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    hub = HubClient(os.environ["JUPYTERHUB_API_URL"].rsplit("hub/api", 1)[0], token)
    culler = Culler(hub, HubClient(settings.proxy_url, token, verify=settings.verify_proxy), settings, log)
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    log.info("culling every %ss; idle timeouts by profile: %s", settings.check_interval, dict(settings.timeouts))
    while not stopped:
        try:
            culler.check_once()
        except Exception:  # a bad check must not end culling; the next one may succeed
            log.exception("culling check failed")
        deadline = time.monotonic() + settings.check_interval
        while not stopped and time.monotonic() < deadline:
            time.sleep(0.2)


if __name__ == "__main__":
    end_with_hub()
    main()
