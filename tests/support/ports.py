"""Free TCP ports on 127.0.0.1 for test hubs."""

from __future__ import annotations

import os
import random
import socket


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(low), int(high)
    except OSError:
        return 32768, 60999


def free_port_block(size: int, low: int = 10000, high: int | None = None) -> int:
    """The first of `size` consecutive free ports, below the kernel's ephemeral range.

    Ports in the ephemeral range can be taken by any outgoing connection between this
    check and the bind; below it only listeners compete.
    """
    high = high or ephemeral_range()[0]
    low, high = worker_share(low, high)
    for _ in range(200):
        start = random.randrange(low, high - size)
        if all(port_is_free(start + i) for i in range(size)):
            return start
    raise RuntimeError(f"no block of {size} free ports")


def worker_share(low: int, high: int) -> tuple[int, int]:
    """This pytest-xdist worker's own slice of [low, high), so parallel workers never pick the
    same ports between checking them and binding them (the whole range without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return low, high
    share = (high - low) // count
    index = int(worker[2:])
    return low + index * share, low + (index + 1) * share
