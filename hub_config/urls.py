"""Addresses and paths derived from settings (pure). A leaf: every config step may import it."""

from __future__ import annotations

from pathlib import Path


def data_path(values: dict, *parts: str) -> str:
    return str(Path(values["hub"]["data_dir"], *parts))


def public_url(values: dict) -> str:
    """The address users type, ending in the base URL."""
    hub = values["hub"]
    if hub["public_url"]:
        return hub["public_url"].rstrip("/") + "/" + hub["base_url"].lstrip("/")
    return _local_url(hub)


def loopback_url(values: dict) -> str:
    """The proxy as seen from this machine (for gpulab's own services), ending in the base URL."""
    return _local_url(values["hub"])


def server_hub_url(values: dict) -> str:
    """Where gpulab's CLI in a user server finds the hub: the public address when one is set
    (a pod cannot reach the hub's loopback), else the proxy on this machine."""
    return public_url(values) if values["hub"]["public_url"] else loopback_url(values)


def _local_url(hub: dict) -> str:
    scheme = "https" if hub["tls"]["cert_file"] else "http"
    host = "127.0.0.1" if hub["ip"] in ("0.0.0.0", "", "::") else hub["ip"]
    return f"{scheme}://{host}:{hub['port']}{hub['base_url']}"
