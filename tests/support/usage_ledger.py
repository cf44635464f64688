"""What the usage ledger's tests share: a migrated SQLite database, a clock the test moves, and
the intervals as they are stored."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from gpulab.compute.usage import UsageInterval
from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade


START = datetime(2026, 11, 10, 9, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self) -> float:
        return self.now


def migrated_sessions(folder: Path) -> sessionmaker:
    """Sessions of a new gpulab database in `folder`, every migration applied."""
    url = f"sqlite:///{folder / 'gpulab.sqlite'}"
    upgrade(url)
    return make_session_factory(make_engine(url))


def intervals(sessions) -> list[UsageInterval]:
    with sessions() as session:
        rows = list(session.scalars(select(UsageInterval).order_by(UsageInterval.id)))
        for row in rows:
            session.expunge(row)
        return rows
