"""Running a service process: settings from the hub, listening where the hub expects, clean stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from typing import Awaitable, Callable
from urllib.parse import urlparse

from tornado.web import Application

from .config import NAV_VARIABLE, SETTINGS_VARIABLE


def service_settings() -> dict:
    """The settings the hub handed this service (see config.add_managed_service)."""
    return json.loads(os.environ.get(SETTINGS_VARIABLE) or "{}")


def listen_address() -> tuple[str, int]:
    """Where this service listens: GPULAB_SERVICE_BIND (when the proxy runs elsewhere) or the host of
    JUPYTERHUB_SERVICE_URL, and that URL's port."""
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    host = os.environ.get("GPULAB_SERVICE_BIND") or url.hostname
    if not host or not url.port:
        raise SystemExit(f"JUPYTERHUB_SERVICE_URL {url.geturl()!r} names no host and port to listen on")
    return host, url.port


def configure_logging(name: str, level: str = "INFO") -> logging.Logger:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=f"[%(levelname)1.1s %(asctime)s {name}] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    return logging.getLogger(f"gpulab.{name}")


async def repeat(seconds: float, step: Callable[[], Awaitable[object]], log: logging.Logger, failing: str) -> None:
    """`step` now and every `seconds` after, until cancelled. A step that fails is logged ("could
    not <failing>; retrying in N s") and the next one tries again: what a service does in the
    background (reconcile, sample) must outlive a hub restart or a busy database."""
    while True:
        try:
            await step()
        except Exception:
            log.exception("could not %s; retrying in %ss", failing, seconds)
        await asyncio.sleep(seconds)


async def serve(app: Application, on_stop: Callable[[], object] | None = None) -> None:
    """Listen on JUPYTERHUB_SERVICE_URL until SIGTERM or SIGINT."""
    host, port = listen_address()
    server = app.listen(port, host, xheaders=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    server.stop()
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result


def build_application(routes: list[tuple], template_dirs: list[str] | None = None,
                      nav: list[dict] | None = None, **settings) -> Application:
    """A tornado app for a hub service: routes are relative to the service's prefix.

    Adds the OAuth callback, XSRF protection for cookie-authenticated requests, and pages
    in the hub's look. Extra keyword arguments become application settings (e.g. a core
    object the handlers use).
    """
    import secrets

    from jupyterhub.services.auth import HubOAuthCallbackHandler

    from .pages import HubLookPages

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    nav = nav if nav is not None else json.loads(os.environ.get(NAV_VARIABLE) or "[]")
    full_routes = [(prefix + "oauth_callback", HubOAuthCallbackHandler)]
    full_routes += [(prefix + route[0].lstrip("/"), *route[1:]) for route in routes]
    return Application(
        full_routes,
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
        gpulab_pages=HubLookPages(template_dirs or [], os.environ.get("JUPYTERHUB_BASE_URL", "/"), nav),
        **settings,
    )
