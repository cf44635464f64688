"""Which addresses a webhook may reach, and sending to exactly the address that was checked.

The scheduler sends webhooks from inside the hub's network, so a user's URL must not reach
loopback, link-local (cloud metadata at 169.254.169.254), private, multicast or reserved
addresses unless an admin allows their network. The host name is resolved once, every address
is checked, and the request connects to a checked address (a second lookup could answer
differently: DNS rebinding).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from typing import Callable, Iterable
from urllib.parse import urlsplit

from gpulab.hub_config.services.errors import Invalid

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


def allowed_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """scheduler.notifications.webhook_allowed_networks as networks (ValueError naming a bad one)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"scheduler.notifications.webhook_allowed_networks: {entry!r} is not an "
                             "IP network such as 10.20.0.0/16") from None
    return tuple(networks)


def system_resolver(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def why_internal(address: Address) -> str | None:
    """Why `address` is not a public one; None if it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return why_internal(address.ipv4_mapped)
    for test, kind in (("is_loopback", "loopback"), ("is_link_local", "link-local (cloud metadata)"),
                       ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                       ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(address, test):
            return kind
    return None if address.is_global else "not public"


def check(url: str, allowed: tuple[Network, ...], resolve: Resolver = system_resolver) -> tuple[str, int, list[str]]:
    """(host, port, checked addresses) of a webhook URL; Invalid (400) naming why otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"notify.webhooks: {url!r} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Invalid(f"notify.webhooks: {url!r} has an invalid port") from None
    try:
        addresses = resolve(parts.hostname, port)
    except (OSError, UnicodeError) as error:
        raise Invalid(f"notify.webhooks: cannot resolve {parts.hostname!r} ({error})") from None
    if not addresses:
        raise Invalid(f"notify.webhooks: {parts.hostname!r} has no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
        kind = why_internal(address)
        if kind and not any(address in network for network in allowed):
            raise Invalid(f"notify.webhooks: {url!r} reaches {address}, a {kind} address; webhooks may only "
                          "reach public addresses (an admin can allow networks in "
                          "scheduler.notifications.webhook_allowed_networks)")
    return parts.hostname, port, addresses


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        # The certificate is checked against the host name, on the connection to the checked address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, allowed: tuple[Network, ...], timeout: float,
         resolve: Resolver = system_resolver) -> int:
    """POST `body` (JSON) to `url` after checking it again; the response status. Redirects are not followed."""
    host, port, addresses = check(url, allowed, resolve)
    parts = urlsplit(url)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(host, port, addresses[0], timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                             "User-Agent": "gpulab-scheduler"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
