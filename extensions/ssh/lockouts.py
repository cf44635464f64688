"""Source addresses locked out of the SSH gateway, kept in gpulab's database so a restart of
the SSH service does not lift a lockout."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from gpulab.db import Base, make_session_factory


class SSHLockoutRow(Base):
    __tablename__ = "ssh_lockouts"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)  # e.g. "source:203.0.113.7"
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _seconds(moment: datetime) -> float:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # SQLite drops the zone
    return aware.timestamp()


class LockoutStore:
    def __init__(self, engine: Engine):
        self.sessions = make_session_factory(engine)

    def active(self, now: float) -> dict[str, float]:
        """{source key: locked until (epoch seconds)} of lockouts not yet over; forgets the others."""
        with self.sessions() as session:
            session.execute(delete(SSHLockoutRow).where(SSHLockoutRow.locked_until <= _moment(now)))
            session.commit()
            return {row.source: _seconds(row.locked_until) for row in session.scalars(select(SSHLockoutRow))}

    def lock(self, source: str, until: float) -> None:
        with self.sessions() as session:
            session.merge(SSHLockoutRow(source=source, locked_until=_moment(until)))
            session.commit()
