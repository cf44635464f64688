"""The usage ledger: intervals of holding GPUs, with their utilisation, in gpulab's database.

The GPU ledger (ledger.py) opens an interval in the same transaction as each claim and closes
it when the claim is released, so interactive servers and scheduled runs are accounted the same
way. The sampler (usage_sampler.py) adds each device's utilisation and memory to the open
intervals every few seconds and moves `seen_at` forward in the same commit: when a holder dies
unnoticed (or the hub with it), reconciliation closes the interval at `seen_at`, so a crash loses
at most one sampling interval of accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import cast

from sqlalchemy import CursorResult, DateTime, Float, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from gpulab.db import Base


class UsageInterval(Base):
    __tablename__ = "gpu_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    claim_id: Mapped[str] = mapped_column(String(32), index=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    purpose: Mapped[str] = mapped_column(String(255))  # "server:alice/gpu", "run:42"
    profile: Mapped[str] = mapped_column(String(255), default="")
    project: Mapped[str] = mapped_column(String(255), default="")  # "" where no project is known
    devices: Mapped[str] = mapped_column(String(2000), default="")  # UUIDs, comma-separated
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    cpus: Mapped[float] = mapped_column(Float, default=0.0)  # the profile's CPU limit (0: none set)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # last time known held
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    # utilisation summary, from the sampler
    samples: Mapped[int] = mapped_column(Integer, default=0)
    utilization_sum: Mapped[int] = mapped_column(Integer, default=0)  # sum over samples of the devices' mean percent
    utilization_max: Mapped[int] = mapped_column(Integer, default=0)
    memory_max_mb: Mapped[int] = mapped_column(Integer, default=0)
    measured_gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # device-seconds with a reading
    idle_gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # of those, at or under the threshold

    @property
    def kind(self) -> str:
        return self.purpose.split(":", 1)[0]

    @property
    def device_list(self) -> list[str]:
        return [d for d in self.devices.split(",") if d]


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def open_interval(session: Session, claim_id: str, owner: str, purpose: str, devices: list[str], now: datetime,
                  profile: str = "", project: str = "", cpus: float = 0.0, gpus: int | None = None) -> None:
    """`gpus` None: one per device (a cluster's pod knows how many it holds before which)."""
    session.add(UsageInterval(claim_id=claim_id, owner=owner, purpose=purpose, profile=profile, project=project,
                              devices=",".join(devices), gpus=len(devices) if gpus is None else gpus,
                              cpus=cpus or 0.0, started_at=now, seen_at=now, ended_at=None))


def close_intervals(session: Session, claim_ids: list[str], now: datetime | None) -> None:
    """End the open intervals of `claim_ids`: at `now` for a release, at their last sighting
    (`now` None) for a holder found dead."""
    if not claim_ids:
        return
    rows = session.scalars(select(UsageInterval).where(UsageInterval.claim_id.in_(claim_ids),
                                                       UsageInterval.ended_at.is_(None)))
    for row in rows:
        row.ended_at = now if now is not None else row.seen_at


def open_intervals(session: Session) -> list[UsageInterval]:
    return list(session.scalars(select(UsageInterval).where(UsageInterval.ended_at.is_(None))))


@dataclass(frozen=True)
class Reading:
    utilization: int | None  # percent; None where NVML measures none (e.g. some MIG instances)
    memory_used_mb: int | None


def add_sample(row: UsageInterval, readings: dict[str, Reading], now: datetime, threshold: int) -> None:
    """Account the time since the interval was last seen with `readings` of its devices."""
    elapsed = max(0.0, (now - utc(row.seen_at)).total_seconds())
    measured = [readings[d] for d in row.device_list if d in readings]
    percents = [r.utilization for r in measured if r.utilization is not None]
    if percents:
        row.samples += 1
        row.utilization_sum += round(sum(percents) / len(percents))
        row.utilization_max = max(row.utilization_max, *percents)
        row.measured_gpu_seconds += elapsed * len(percents)
        row.idle_gpu_seconds += elapsed * sum(1 for p in percents if p <= threshold)
    memory = [r.memory_used_mb for r in measured if r.memory_used_mb is not None]
    if memory:
        row.memory_max_mb = max(row.memory_max_mb, *memory)
    row.seen_at = now


def intervals_between(session: Session, since: datetime, until: datetime) -> list[UsageInterval]:
    """Every interval that overlaps [since, until) (open ones included)."""
    rows = session.scalars(select(UsageInterval).where(
        UsageInterval.started_at < until,
        (UsageInterval.ended_at.is_(None)) | (UsageInterval.ended_at > since)))
    found = list(rows)
    for row in found:
        session.expunge(row)
    return found


def prune(session: Session, now: datetime, retention_days: int) -> int:
    """Delete intervals that ended more than `retention_days` ago (0: keep everything)."""
    if retention_days <= 0:
        return 0
    cutoff = now - timedelta(days=retention_days)
    result = cast(CursorResult, session.execute(delete(UsageInterval).where(UsageInterval.ended_at.is_not(None),
                                                                            UsageInterval.ended_at < cutoff)))
    return result.rowcount or 0
