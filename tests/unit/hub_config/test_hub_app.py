"""GpulabHub.start_service (hub_config/hub_app.py), called as JupyterHub's start() calls it: once
per service, in order, each awaited. Stock JupyterHub's own start_service is replaced by a
stand-in that records what happens; no hub, proxy or process is started."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from jupyterhub.app import JupyterHub
from traitlets import Any

from gpulab.hub_config.hub_app import GpulabHub


class Hub(GpulabHub):
    users = Any({})  # JupyterHub's is a UserDict made from its database


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


def run_start(monkeypatch, services: list[str], stand_in) -> tuple[list[bool], list[str], Records]:
    events: list[str] = []

    class Proxy:
        async def check_routes(self, users, service_map):
            events.append("routes")

    async def stock_start_service(self, name, service, ssl_context=None):
        return await stand_in(name, events)

    monkeypatch.setattr(JupyterHub, "start_service", stock_start_service)
    hub = Hub()
    hub.proxy = Proxy()
    hub._service_map = {name: SimpleNamespace(managed=True) for name in services}
    records = Records()
    hub.log = logging.getLogger("test-gpulab-hub")
    hub.log.addHandler(records)
    hub.log.setLevel(logging.INFO)

    async def start() -> list[bool]:  # as JupyterHub.start() does
        return [await asyncio.wait_for(hub.start_service(name, service), 10)
                for name, service in hub._service_map.items()]

    try:
        return asyncio.run(start()), events, records
    finally:
        hub.log.removeHandler(records)


def test_the_services_start_together_after_the_proxy_routes_the_hub(monkeypatch):
    second_started = asyncio.Event()

    async def stand_in(name: str, events: list[str]) -> bool:
        events.append(f"start {name}")
        if name == "first":
            await second_started.wait()  # a serial start would never get here: the wait_for fails
        else:
            second_started.set()
        events.append(f"up {name}")
        return True

    results, events, records = run_start(monkeypatch, ["first", "second"], stand_in)
    assert results == [True, True]
    assert events[0] == "routes"
    assert events.index("start second") < events.index("up first")
    assert (logging.INFO, "Starting 2 services together: first, second") in records.lines
    assert (logging.INFO, "Service first answers") in records.lines


@pytest.mark.parametrize("failure", ["returns False", "raises"])
def test_a_service_that_does_not_start_is_named_and_the_others_start(monkeypatch, failure):
    async def stand_in(name: str, events: list[str]) -> bool:
        events.append(f"start {name}")
        await asyncio.sleep(0.01)
        if name == "broken":
            if failure == "raises":
                raise RuntimeError("no such command")
            return False
        return True

    results, events, records = run_start(monkeypatch, ["broken", "other"], stand_in)
    assert results == [True, True]  # True: start() does not exit the hub
    assert {"start broken", "start other"} <= set(events)
    critical = [line for level, line in records.lines if level == logging.CRITICAL]
    assert len(critical) == 1 and critical[0].startswith("Service broken did not start")
    assert (logging.INFO, "Service other answers") in records.lines
