"""Free TCP ports for test hubs."""

from __future__ import annotations

import os
import random

from gpulab.spawner.server_ports import can_listen, ephemeral_range


def free_port_block(size: int, low: int = 10000, high: int | None = None) -> int:
    """The first of `size` consecutive free ports, below the kernel's ephemeral range.

    Ports in the ephemeral range can be taken by any outgoing connection between this
    check and the bind; below it only listeners compete.
    """
    high = high or ephemeral_range()[0]
    low, high = worker_share(low, high)
    for _ in range(200):
        start = random.randrange(low, high - size)
        if all(can_listen(start + i) for i in range(size)):
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
