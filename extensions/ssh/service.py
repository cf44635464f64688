"""The SSH gateway process the hub starts: `python -m gpulab.extensions.ssh.service`.

It serves the keys API and the "SSH keys" page on its HTTP port (the hub proxies it at
/services/ssh/) and the SSH gateway on ssh.port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from gpulab.db import make_engine
from gpulab.hub_config.services.lifetime import end_with_hub
from gpulab.hub_config.services.runner import build_application, configure_logging, serve, service_settings

from .audit import AuditLog
from .gateway import Gateway, GatewaySettings
from .hubapi import HubAPI
from .lockouts import LockoutStore
from .publickeys import fingerprint
from .ratelimit import FailureLimiter
from .service_settings import GatewayServiceSettings
from .store import KeyStore
from .trust import gateway_host_key, master_secret
from .upstream import Upstream, UpstreamSettings
from .web import ROUTES, Endpoint


async def main() -> int:
    settings = GatewayServiceSettings.of(service_settings())
    log = configure_logging("ssh", settings.log_level)
    if settings.log_level != "DEBUG":
        logging.getLogger("asyncssh").setLevel(logging.WARNING)  # the audit log says who did what
    audit = AuditLog(settings.audit_log)
    audit.open()
    host_key = gateway_host_key(Path(settings.host_key))
    engine = make_engine(settings.database_url)
    keys = KeyStore(engine)
    hub = HubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    upstream = Upstream(hub, UpstreamSettings(
        settings.servers_url, settings.start_stopped_servers, settings.start_timeout,
        master_secret(Path(settings.master_secret))), audit, log)
    limiter = FailureLimiter(settings.max_failed_attempts, settings.failure_window, settings.lockout)
    gateway = Gateway(GatewaySettings(settings.bind_address, settings.port, settings.allow_token_password),
                      host_key, keys, hub, upstream, limiter, LockoutStore(engine), audit, log)
    try:
        await gateway.start()
    except OSError as exc:
        log.error("cannot listen for SSH on %s:%s (%s): set ssh.port and ssh.bind_address, or ssh.enabled: false",
                  settings.bind_address, settings.port, exc.strerror or exc)
        return 1
    public = host_key.export_public_key("openssh").decode().strip()
    endpoint = Endpoint(settings.public_host, settings.port, public, fingerprint(host_key))
    templates = str(resources.files("gpulab.extensions.ssh") / "templates")
    app = build_application(ROUTES, [templates], ssh_keys=keys, ssh_endpoint=endpoint)
    await serve(app, on_stop=gateway.stop)
    return 0


if __name__ == "__main__":
    end_with_hub()
    sys.exit(asyncio.run(main()))
