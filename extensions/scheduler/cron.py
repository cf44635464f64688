"""Cron schedules with time zones (pure): validation, the next slot, and slots missed while down."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from gpulab.hub_config.services.errors import Invalid

MAX_MISSED_SCAN = 10_000  # a schedule down for years must not stall the scheduler
MAX_ZONE_LENGTH = 64  # the longest IANA name is ~32 characters; the column holds 64
# A schedule must fire within this many years (29 February fires every 4, at worst 8 around 2100).
MAX_YEARS_BETWEEN_SLOTS = 8
FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day of month", "1-31"), ("month", "1-12"),
          ("day of week", "0-6, 0 = Sunday"))


class NeverFires(Invalid):
    """The expression is valid but names no date that comes (e.g. 31 February)."""


def zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or len(name) > MAX_ZONE_LENGTH:
        raise Invalid(f"timezone: unknown time zone (longer than {MAX_ZONE_LENGTH} characters); "
                      "use an IANA name such as Europe/Berlin or UTC")
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name the file system refuses
        raise Invalid(f"timezone: unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC") from None


def field_problem(expression: str) -> str | None:
    """What is wrong with a cron expression, naming the field and value; None if it is valid."""
    if not isinstance(expression, str):
        return "expected a string"
    fields = expression.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}, e.g. '0 6 * * 1-5'"
    for index, (name, allowed) in enumerate(FIELDS):
        alone = ["*"] * 5
        alone[index] = fields[index]
        if not croniter.is_valid(" ".join(alone)):
            return f"the {name} field {fields[index]!r} is not valid (allowed: {allowed})"
    if not croniter.is_valid(expression):
        return "the fields do not combine into a valid expression"
    return None


def validate(expression: str, timezone: str, now: datetime | None = None) -> None:
    """Raise Invalid (400) unless `expression` is a 5-field cron expression that fires and the zone exists."""
    zone(timezone)
    problem = field_problem(expression)
    if problem:
        raise Invalid(f"cron: invalid cron expression {expression!r}: {problem}")
    if now is not None:
        next_slot(expression, timezone, now)  # NeverFires for 31 February and the like


def next_slot(expression: str, timezone: str, after: datetime) -> datetime:
    """The first slot strictly after `after` (aware), as an aware UTC datetime.

    croniter steps through naive wall-clock time and zoneinfo gives each slot its offset
    (croniter 1.4's own time-zone arithmetic gets daylight-saving days wrong). A slot in the
    spring-forward gap runs an hour later in wall time; one in the autumn overlap runs once.
    Raises NeverFires when no slot comes within MAX_YEARS_BETWEEN_SLOTS.
    """
    tz = zone(timezone)
    cursor = after.astimezone(tz).replace(tzinfo=None)
    for _ in range(4):  # an overlap repeats at most one wall-clock hour
        try:
            cursor = croniter(expression, cursor, max_years_between_matches=MAX_YEARS_BETWEEN_SLOTS).get_next(datetime)
        except CroniterError:
            raise NeverFires(f"cron: {expression!r} never fires (no matching date within "
                             f"{MAX_YEARS_BETWEEN_SLOTS} years, e.g. 31 February)") from None
        slot = cursor.replace(tzinfo=tz).astimezone(ZoneInfo("UTC"))
        if slot > after:
            return slot
    raise NeverFires(f"cron: {expression!r} does not move forward in time zone {timezone!r}")


def due_slots(expression: str, timezone: str, last: datetime, now: datetime) -> list[datetime]:
    """Every slot after `last` up to and including `now`."""
    slots: list[datetime] = []
    slot = next_slot(expression, timezone, last)
    while slot <= now and len(slots) < MAX_MISSED_SCAN:
        slots.append(slot)
        slot = next_slot(expression, timezone, slot)
    return slots


def slots_to_run(slots: list[datetime], now: datetime, policy: str, grace: timedelta) -> list[datetime]:
    """Which due slots become runs.

    Slots not yet reached (queued early for prewarm) always run. Of the slots already past:
    when none is older than `grace` they were merely late and all run; otherwise some passed
    while the scheduler was down, and "run_once" runs only the latest past slot (one run for
    the whole outage), "skip" only those still within `grace`.
    """
    future = [s for s in slots if s > now]
    past = [s for s in slots if s <= now]
    missed = [s for s in past if now - s > grace]
    if not missed:
        return past + future
    if policy == "run_once":
        return [past[-1]] + future
    return [s for s in past if now - s <= grace] + future
