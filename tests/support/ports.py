"""Free TCP ports on 127.0.0.1 for test hubs."""

from __future__ import annotations

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


def free_port_block(size: int, low: int = 20000, high: int = 60000) -> int:
    """The first of `size` consecutive free ports."""
    for _ in range(200):
        start = random.randrange(low, high - size)
        if all(port_is_free(start + i) for i in range(size)):
            return start
    raise RuntimeError(f"no block of {size} free ports")
