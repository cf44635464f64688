"""Scheduled runs in the hub's Prometheus metrics (/hub/metrics), read from gpulab's database.

The scheduler runs in a process of its own, so the hub's process reports its runs: a
collector counts the runs by status at each scrape. Prometheus then needs one endpoint per
hub, the one the chart's scrape annotations name.
"""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from gpulab.db import make_engine, make_session_factory

from .models import COMPLETED, FAILED, QUEUED, RUNNING, STOPPED, STOPPING, TIMED_OUT, WAITING, Run

STATUSES = (QUEUED, WAITING, RUNNING, STOPPING, COMPLETED, FAILED, TIMED_OUT, STOPPED)
log = logging.getLogger("gpulab.scheduler.metrics")


class RunsCollector:
    def __init__(self, sessions):
        self.sessions = sessions

    def collect(self):
        runs = GaugeMetricFamily("gpulab_scheduled_runs", "Scheduled notebook runs kept in gpulab's database, by status",
                                 labels=["status"])
        try:
            with self.sessions() as session:
                counts = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        except Exception as error:  # a scrape must not fail the hub's other metrics
            log.warning("cannot count scheduled runs: %s", error)
            return
        for status in STATUSES:
            runs.add_metric([status], counts.get(status, 0))
        yield runs


COLLECTOR_ATTRIBUTE = "gpulab_runs_collector"  # kept on the registry it is registered in


def register_run_metrics(database_url: str, registry=None) -> RunsCollector:
    """Once per registry (the hub's configuration may be loaded again in one process)."""
    from prometheus_client import REGISTRY

    registry = registry or REGISTRY
    collector = getattr(registry, COLLECTOR_ATTRIBUTE, None)
    if collector is None:
        collector = RunsCollector(make_session_factory(make_engine(database_url)))
        registry.register(collector)
        setattr(registry, COLLECTOR_ATTRIBUTE, collector)
    return collector
