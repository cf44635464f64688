"""Cron schedules with time zones (pure): validation, the next slot, and slots missed while down."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from gpulab.extensions.service.errors import Invalid

MAX_MISSED_SCAN = 10_000  # a schedule down for years must not stall the scheduler


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC") from None


def validate(expression: str, timezone: str) -> None:
    """Raise Invalid (400) unless `expression` is a 5-field cron expression and the zone exists."""
    zone(timezone)
    if not isinstance(expression, str) or len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise Invalid(f"invalid cron expression {expression!r}: expected 5 fields, e.g. '0 6 * * 1-5'")


def next_slot(expression: str, timezone: str, after: datetime) -> datetime:
    """The first slot strictly after `after` (aware), as an aware UTC datetime.

    croniter steps through naive wall-clock time and zoneinfo gives each slot its offset
    (croniter 1.4's own time-zone arithmetic gets daylight-saving days wrong). A slot in the
    spring-forward gap runs an hour later in wall time; one in the autumn overlap runs once.
    """
    tz = zone(timezone)
    cursor = after.astimezone(tz).replace(tzinfo=None)
    while True:
        cursor = croniter(expression, cursor).get_next(datetime)
        slot = cursor.replace(tzinfo=tz).astimezone(ZoneInfo("UTC"))
        if slot > after:
            return slot


def due_slots(expression: str, timezone: str, last: datetime, now: datetime) -> list[datetime]:
    """Every slot after `last` up to and including `now`."""
    slots = []
    slot = next_slot(expression, timezone, last)
    while slot <= now and len(slots) < MAX_MISSED_SCAN:
        slots.append(slot)
        slot = next_slot(expression, timezone, slot)
    return slots


def slots_to_run(slots: list[datetime], now: datetime, policy: str, grace: timedelta) -> list[datetime]:
    """Which due slots become runs: on time ones always; missed ones (older than `grace`) by policy.

    "skip" drops missed slots; "run_once" runs the latest missed slot once.
    """
    on_time = [s for s in slots if now - s <= grace]
    missed = [s for s in slots if now - s > grace]
    if policy == "run_once" and missed:
        return [missed[-1]] + on_time
    return on_time
