"""Addresses and paths derived from settings (pure). A leaf: every config step may import it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from .typed_settings import Hub, Settings


def data_path(s: Settings, *parts: str) -> str:
    return str(Path(s.hub.data_dir, *parts))


def public_url(s: Settings) -> str:
    """The address users type, ending in the base URL."""
    hub = s.hub
    if hub.public_url:
        return hub.public_url.rstrip("/") + "/" + hub.base_url.lstrip("/")
    return _local_url(hub)


def loopback_url(s: Settings) -> str:
    """The proxy as seen from this machine (for gpulab's own services), ending in the base URL."""
    return _local_url(s.hub)


def server_hub_url(s: Settings) -> str:
    """Where gpulab's CLI in a user server finds the hub: the public address when one is set
    (a pod cannot reach the hub's loopback), else the proxy on this machine."""
    return public_url(s) if s.hub.public_url else loopback_url(s)


def _local_url(hub: Hub) -> str:
    scheme = "https" if hub.tls.cert_file else "http"
    host = "127.0.0.1" if hub.ip in ("0.0.0.0", "", "::") else hub.ip
    return f"{scheme}://{host}:{hub.port}{hub.base_url}"
