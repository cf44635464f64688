"""The port a server listens on, on this machine's network (the local backend's processes, the
docker backend's containers on the host's network).

JupyterHub's `random_port()` binds port 0 and closes it again: a port of the kernel's ephemeral
range (net.ipv4.ip_local_port_range), free at that moment. The server binds it only once it has
started, seconds later when many spawn at once, and meanwhile the kernel may give that port to any
outgoing connection on the machine (the hub's, traefik's, a user's): the server then exits with
"port N is not available" and its spawn fails (benchmarks/load.py, 50 users at once: 1 spawn of
50 in one run). Ports above the ephemeral range are never given to an outgoing connection, only
taken by a listener; one that is free now and that this hub has not handed to another spawn in the
last minutes is the server's. Where that range is empty (ip_local_port_range reaching 65535), the
ports below it are used the same way, and where both are, JupyterHub's `random_port()`.
"""

from __future__ import annotations

import random
import socket
import time

from jupyterhub.utils import random_port

LOWEST_UNPRIVILEGED = 1024
BELOW_RANGE_SPAN = 4096  # ports just below the ephemeral range, where none is above it
# A port handed out is not handed out again for this long: spawns at once must not pick the same
# one before either binds it (a server binds its port within its start timeout).
HELD_SECONDS = 300.0
ATTEMPTS = 64

_handed_out: dict[int, float] = {}  # port -> when it was handed out (time.monotonic)


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as settings:
            low, high = (int(word) for word in settings.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def candidate_ports(low: int, high: int) -> range:
    """The ports no outgoing connection is given, given the ephemeral range [low, high]."""
    above = range(high + 1, 65536)
    return above if len(above) else range(max(LOWEST_UNPRIVILEGED, low - BELOW_RANGE_SPAN), low)


def can_listen(port: int) -> bool:
    """Whether a server could listen on `port` now, on every interface (as tornado binds it,
    with SO_REUSEADDR: a port whose last connection is in TIME_WAIT is free to a server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def server_port(choose=random.choice, listenable=can_listen, now=time.monotonic) -> int:
    """A free port for a new server, not handed out by this hub in the last HELD_SECONDS."""
    moment = now()
    for port in [p for p, when in _handed_out.items() if moment - when > HELD_SECONDS]:
        del _handed_out[port]
    ports = candidate_ports(*ephemeral_range())
    if len(ports):
        for _ in range(ATTEMPTS):
            port = choose(ports)
            if port not in _handed_out and listenable(port):
                _handed_out[port] = moment
                return port
    return random_port()
