"""The managed services' watch (hub_config/service_watch.py) against stand-in services: a dead
service is polled (so JupyterHub restarts it) at once the first time, then less and less often
while it keeps dying, and a service that stayed up counts as healthy again. No hub is started."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from gpulab.hub_config.service_watch import MAX_BACKOFF_SECONDS, ServiceWatch, backoff


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Spawner:
    """Answers each poll with the next status (None: running); records when it was polled."""

    def __init__(self, statuses, clock):
        self.statuses, self.clock, self.polled = list(statuses), clock, []
        self._poll_callback = object()  # JupyterHub is polling it: meant to be running

    async def poll_and_notify(self):
        self.polled.append(self.clock())
        return self.statuses.pop(0) if self.statuses else None


def app_with(**spawners) -> SimpleNamespace:
    return SimpleNamespace(_service_map={name: SimpleNamespace(managed=True, spawner=spawner)
                                         for name, spawner in spawners.items()})


def every_second(watch: ServiceWatch, app, clock: Clock, seconds: int, log) -> None:
    for _ in range(seconds):
        asyncio.run(watch.poll(app, log))
        clock.now += 1


def test_backoff_doubles_from_one_second_up_to_jupyterhubs_own_poll():
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert MAX_BACKOFF_SECONDS == 30


def test_a_service_that_keeps_dying_is_looked_at_less_often_and_others_every_second(caplog):
    clock = Clock()
    failing = Spawner([3] * 10, clock)  # exits with status 3 at every start
    healthy = Spawner([], clock)
    watch = ServiceWatch(clock=clock)
    with caplog.at_level(logging.WARNING):
        every_second(watch, app_with(failing=failing, healthy=healthy), clock, 40, logging.getLogger("test"))
    start = 1000.0
    assert [t - start for t in failing.polled] == [0, 1, 3, 7, 15, 31]
    assert len(healthy.polled) == 40
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Service failing died (status 3) and is being started again"
    assert lines[1] == "Service failing died (status 3) and is being started again (death 2 in a row: next look in 2 s)"
    assert len(lines) == 6  # not 40


def test_a_service_up_for_a_minute_after_dying_is_healthy_again():
    clock = Clock()
    spawner = Spawner([-9, -9, None, *[None] * 60, -9], clock)
    watch = ServiceWatch(clock=clock)
    every_second(watch, app_with(projects=spawner), clock, 70, logging.getLogger("test"))
    assert watch.deaths == {"projects": 1}  # the third death counts as a first one: polled a second later
    assert spawner.polled[-1] - spawner.polled[-2] == 1


def test_a_service_not_meant_to_run_is_not_polled():
    clock = Clock()
    stopped = Spawner([0], clock)
    stopped._poll_callback = None  # stopped on purpose, or being restarted by JupyterHub
    every_second(ServiceWatch(clock=clock), app_with(stopped=stopped), clock, 3, logging.getLogger("test"))
    assert stopped.polled == []
