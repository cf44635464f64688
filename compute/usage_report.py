"""Usage reports (pure but for `spent_this_month` and `spent_reader`): GPU-, CPU- and server-hours by user, project
or profile for a period, and the GPU-hours budgets count.

Each interval counts only its part inside the period; an open interval counts up to `now`.
The idle share of an interval (device-seconds at or under the culling threshold, out of the
device-seconds measured) applies pro rata to its part inside the period.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from .budgets import Spent, month_start
from .usage import UsageInterval, intervals_between, utc

GROUPINGS = ("user", "project", "profile", "purpose")
NO_PROJECT = "(none)"


class BadPeriod(ValueError):
    """The caller's dates or grouping make no report; the message says why."""


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime

    @property
    def label(self) -> str:
        return f"{self.since.date().isoformat()} to {self.until.date().isoformat()}"


def parse_day(text: str, name: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadPeriod(f"{name}={text!r} is not a date such as 2026-11-01") from None
    return datetime.combine(day, time(), timezone.utc)


def period(since: str | None, until: str | None, now: datetime) -> Period:
    """The period from `since` (default: the first of this month) up to, not including, the day
    after `until` (default: now)."""
    start = parse_day(since, "since") if since else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = parse_day(until, "until") + timedelta(days=1) if until else now
    if end <= start:
        raise BadPeriod(f"until ({end.date()}) must not be before since ({start.date()})")
    return Period(start, end)


def check_grouping(by: str) -> str:
    if by not in GROUPINGS:
        raise BadPeriod(f"by={by!r} is not one of {', '.join(GROUPINGS)}")
    return by


@dataclass
class UsageRow:
    key: str
    gpu_hours: float = 0.0
    idle_gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    server_hours: float = 0.0
    run_hours: float = 0.0

    @property
    def idle_share(self) -> float:
        return self.idle_gpu_hours / self.gpu_hours if self.gpu_hours else 0.0

    def as_dict(self) -> dict:
        values = {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}
        return {**values, "idle_share": round(self.idle_share, 4)}


def hours_inside(row: UsageInterval, within: Period, now: datetime) -> float:
    start = max(utc(row.started_at), within.since)
    end = min(utc(row.ended_at) if row.ended_at else now, within.until)
    return max(0.0, (end - start).total_seconds() / 3600)


def key_of(row: UsageInterval, by: str) -> str:
    if by == "user":
        return row.owner
    if by == "project":
        return row.project or NO_PROJECT
    if by == "profile":
        return row.profile or "(unknown)"
    return row.kind


def summarise(rows: list[UsageInterval], within: Period, by: str, now: datetime) -> list[UsageRow]:
    """One row per user, project, profile or purpose, biggest GPU-hours first."""
    totals: dict[str, UsageRow] = {}
    for row in rows:
        hours = hours_inside(row, within, now)
        if hours <= 0:
            continue
        total = totals.setdefault(key_of(row, by), UsageRow(key_of(row, by)))
        gpu_hours = hours * row.gpus
        total.gpu_hours += gpu_hours
        if row.measured_gpu_seconds:
            total.idle_gpu_hours += gpu_hours * row.idle_gpu_seconds / row.measured_gpu_seconds
        total.cpu_hours += hours * row.cpus
        if row.kind == "server":
            total.server_hours += hours
        else:
            total.run_hours += hours
    return sorted(totals.values(), key=lambda r: (-r.gpu_hours, r.key))


def visible_to(rows: list[UsageInterval], user: str, admin: bool,
               led_projects: frozenset[str] = frozenset()) -> list[UsageInterval]:
    """Admins see everyone's intervals; anyone else their own and those of the projects they lead."""
    return rows if admin else [r for r in rows if r.owner == user or (r.project and r.project in led_projects)]


CSV_COLUMNS = ("key", "gpu_hours", "idle_gpu_hours", "idle_share", "cpu_hours", "server_hours", "run_hours")


def as_csv(rows: list[UsageRow], by: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((by,) + CSV_COLUMNS[1:])
    for row in rows:
        values = row.as_dict()
        writer.writerow([values[c] for c in CSV_COLUMNS])
    return out.getvalue()


def month_spent(rows: list[UsageInterval], now: datetime) -> Spent:
    """GPU-hours used this calendar month (UTC) by owner and by project; open intervals count up to now."""
    this_month = Period(month_start(now), now)
    return Spent(this_month.since, {r.key: r.gpu_hours for r in summarise(rows, this_month, "user", now)},
                 {r.key: r.gpu_hours for r in summarise([r for r in rows if r.project], this_month, "project", now)})


def spent_this_month(session: Session, now: datetime) -> Spent:
    """What budgets count, read from the usage ledger through the caller's session."""
    return month_spent(intervals_between(session, month_start(now), now), now)


def spent_reader(sessions: sessionmaker, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
                 ) -> Callable[[], Spent]:
    """`spent_this_month` in a session of its own: for a cluster's pool, which claims outside the ledger."""

    def read() -> Spent:
        with sessions() as session:
            return spent_this_month(session, clock())

    return read
