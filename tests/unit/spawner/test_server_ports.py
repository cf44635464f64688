"""A server's port: outside the ephemeral range, free, and not handed to two spawns at once."""

from __future__ import annotations

import socket
from itertools import cycle

import pytest

from gpulab.spawner import server_ports


@pytest.fixture(autouse=True)
def fresh_hub(monkeypatch):
    monkeypatch.setattr(server_ports, "_handed_out", {})


def test_ports_above_the_ephemeral_range_or_else_just_below_it():
    assert server_ports.candidate_ports(32768, 60999) == range(61000, 65536)
    assert server_ports.candidate_ports(10000, 65535) == range(10000 - server_ports.BELOW_RANGE_SPAN, 10000)
    assert server_ports.candidate_ports(1500, 65535) == range(1024, 1500)
    assert len(server_ports.candidate_ports(1024, 65535)) == 0


def test_a_port_is_never_one_an_outgoing_connection_can_be_given():
    low, high = server_ports.ephemeral_range()
    for _ in range(20):
        port = server_ports.server_port()
        assert not low <= port <= high
        assert server_ports.can_listen(port)


def test_spawns_at_once_get_different_ports_and_a_port_comes_back_after_its_hold():
    clock = [1000.0]
    always_61000 = lambda ports: 61000  # noqa: E731
    first = server_ports.server_port(choose=always_61000, listenable=lambda port: True, now=lambda: clock[0])
    assert first == 61000
    # the same port chosen again while held: refused every time, so JupyterHub's own pick
    second = server_ports.server_port(choose=always_61000, listenable=lambda port: True, now=lambda: clock[0])
    assert second != 61000
    choices = cycle([61000, 61001])
    third = server_ports.server_port(choose=lambda ports: next(choices), listenable=lambda port: True,
                                     now=lambda: clock[0])
    assert third == 61001
    clock[0] += server_ports.HELD_SECONDS + 1
    assert server_ports.server_port(choose=always_61000, listenable=lambda port: True, now=lambda: clock[0]) == 61000


def test_a_port_a_listener_holds_is_not_handed_out():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not server_ports.can_listen(taken)
        choices = cycle([taken, taken + 1 if taken < 65535 else taken - 1])
        port = server_ports.server_port(choose=lambda ports: next(choices))
        assert port != taken
