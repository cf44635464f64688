"""The ports `gpulab up` listens on: the plan (pure) and the start-up check that each is free.

Two hubs on one machine must not share a port: a second hub whose proxy API port is taken
waits 30 s for its traefik and meanwhile talks to the first hub's proxy. So before anything
starts, every port gpulab will listen on is checked, and a taken one stops `gpulab up` at
once with one line naming the port, who holds it and the setting to change.

A taken port is never swapped for a free one: user servers outlive a hub restart and keep
reaching the hub at the internal URL they were started with, so the ports stay what the
settings say (or their defaults), and the user moves them.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from .typed_settings import Settings


WILDCARDS = ("", "0.0.0.0", "::")
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Listener:
    """One port gpulab listens on, and the setting that moves it."""

    what: str
    address: str  # "", "0.0.0.0" or "::": every interface
    port: int
    setting: str
    offset: int = 0  # the port is `setting` + offset (the hub's services)
    advice: str = ""  # what to change, when more than `setting` will do

    @property
    def source(self) -> str:
        return f"{self.setting} + {self.offset}" if self.offset else self.setting


def planned_listeners(s: Settings, services: list[tuple[str, str, int]]) -> list[Listener]:
    """Every port the hub, its proxy and `services` ((name, address, port) of each managed
    service that listens) will listen on (pure)."""
    hub, proxy, ssh = s.hub, s.proxy, s.ssh
    listeners = []
    if not proxy.api_url:  # a proxy that runs apart listens elsewhere
        listeners += [Listener("the public proxy", hub.ip, hub.port, "hub.port",
                               advice="set hub.port (or `gpulab up --port`) to a free port"),
                      Listener("the proxy's API", LOOPBACK, proxy.api_port, "proxy.api_port")]
    listeners.append(Listener("the hub", LOOPBACK, hub.internal_port, "hub.internal_port"))
    for name, address, port in sorted(services, key=lambda service: service[2]):
        listeners.append(Listener(f"the {name} service", address, port, "hub.internal_port",
                                  port - hub.internal_port))
    if ssh.enabled:
        # worded as the gateway's own message, should the port be taken after this check
        listeners.append(Listener("SSH", ssh.bind_address or hub.ip, ssh.port, "ssh.port",
                                  advice="set ssh.port and ssh.bind_address, or ssh.enabled: false"))
    return listeners


def overlap(a: Listener, b: Listener) -> bool:
    """Whether the two cannot both listen: one port, and one address or a wildcard."""
    return a.port == b.port and (a.address == b.address or a.address in WILDCARDS or b.address in WILDCARDS)


def clash(listeners: list[Listener]) -> str | None:
    """Two of gpulab's own listeners on one port, or None (pure)."""
    for index, first in enumerate(listeners):
        for second in listeners[index + 1:]:
            if overlap(first, second):
                return (f"port {first.port} is wanted both for {first.what} ({first.source}) and for "
                        f"{second.what} ({second.source}); set {second.setting} to another port")
    return None


def bind_error(address: str, port: int) -> OSError | None:
    """Why nothing could listen on address:port now, or None. SO_REUSEADDR as the hub and
    traefik use it, so connections of a process that just ended do not count."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            return exc
    return None


def holder(port: int) -> str | None:
    """The process listening on `port`, as "pid N (command line)", or None when it cannot be
    told (another user's process, seen without root)."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            try:
                command = " ".join(psutil.Process(connection.pid).cmdline())
            except psutil.Error:
                command = "?"
            return f"pid {connection.pid} ({command[:160]})"
    return None


def remedy(listener: Listener, listeners: list[Listener]) -> str:
    if listener.advice:
        return listener.advice
    span = 1 + max(other.offset for other in listeners if other.setting == listener.setting)
    if span > 1:
        return f"set {listener.setting} to the first of {span} free ports in a row"
    return f"set {listener.setting} to a free port"


def unavailable_port(listeners: list[Listener]) -> str | None:
    """The first planned port that is taken or clashes, as one line, or None."""
    problem = clash(listeners)
    if problem:
        return problem
    for listener in listeners:
        error = bind_error(listener.address, listener.port)
        if error is None:
            continue
        where = f"{listener.address or '0.0.0.0'}:{listener.port}"
        if error.errno == errno.EADDRINUSE:
            reason = f"address already in use, by {holder(listener.port) or 'another process'}"
        else:
            reason = (error.strerror or str(error)).lower()
        return (f"cannot listen for {listener.what} on {where} ({listener.source}): {reason}; "
                f"{remedy(listener, listeners)}")
    return None
