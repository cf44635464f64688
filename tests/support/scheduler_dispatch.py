"""A dispatcher's runs in unit tests: what a runner reports at its end, and the runs as
(attempt, status)."""

from __future__ import annotations

from sqlalchemy import select

from gpulab.extensions.scheduler.dispatcher import Dispatcher
from gpulab.extensions.scheduler.models import Run


def report(dispatcher: Dispatcher, run_id: str, status: str) -> None:
    with dispatcher.core.sessions.begin() as session:  # as runner_event records it
        session.get(Run, run_id).outcome = status


def runs(dispatcher: Dispatcher) -> list[tuple[int, str]]:
    with dispatcher.core.sessions() as session:
        return sorted((r.attempt, r.status) for r in session.scalars(select(Run)))
