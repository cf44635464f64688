"""Cron slots with time zones, and slots missed while the scheduler was down."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gpulab.extensions.scheduler.cron import due_slots, next_slot, slots_to_run, validate
from gpulab.hub_config.services.errors import Invalid


UTC = timezone.utc


def test_validation_names_the_problem():
    validate("0 6 * * 1-5", "Europe/Berlin")
    with pytest.raises(Invalid, match="invalid cron expression '61 \\* \\* \\* \\*': the minute field '61'"):
        validate("61 * * * *", "UTC")
    with pytest.raises(Invalid, match="the day of week field '8' is not valid"):
        validate("0 6 * * 8", "UTC")
    with pytest.raises(Invalid, match="the hour field '\\*/0'"):
        validate("0 */0 * * *", "UTC")
    with pytest.raises(Invalid, match="expected 5 fields .*, got 4"):
        validate("* * * *", "UTC")
    with pytest.raises(Invalid, match="unknown time zone 'Mars/Olympus'"):
        validate("0 6 * * *", "Mars/Olympus")


@pytest.mark.parametrize("name", ["A" * 300, "Europe/" + "x" * 250, "../../etc/passwd", "UTC\x00", "/etc/localtime"])
def test_odd_time_zones_are_invalid_not_crashes(name):
    with pytest.raises(Invalid, match="timezone: unknown time zone"):
        validate("0 6 * * *", name)


def test_a_date_that_never_comes_is_refused_and_a_rare_one_is_not():
    now = datetime(2026, 11, 22, tzinfo=UTC)
    with pytest.raises(Invalid, match="never fires"):
        validate("0 0 31 2 *", "UTC", now)
    with pytest.raises(Invalid, match="never fires"):
        next_slot("0 0 30 2 *", "UTC", now)
    validate("0 0 29 2 *", "Europe/Berlin", now)  # leap days come every four years
    assert next_slot("0 0 29 2 *", "UTC", now) == datetime(2028, 2, 29, tzinfo=UTC)


def test_next_slot_follows_the_time_zone_across_daylight_saving():
    # 06:00 in Berlin is 05:00 UTC in winter and 04:00 UTC in summer.
    assert next_slot("0 6 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC)) == \
        datetime(2026, 3, 28, 5, tzinfo=UTC)
    assert next_slot("0 6 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC)) == \
        datetime(2026, 3, 29, 4, tzinfo=UTC)


def test_due_slots_and_the_missed_slot_policy():
    last = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    now = datetime(2026, 11, 22, 10, 5, 30, tzinfo=UTC)
    slots = due_slots("* * * * *", "UTC", last, now)
    assert [s.minute for s in slots] == [1, 2, 3, 4, 5]
    grace = timedelta(seconds=60)
    assert [s.minute for s in slots_to_run(slots, now, "skip", grace)] == [5]
    assert [s.minute for s in slots_to_run(slots, now, "run_once", grace)] == [5]  # one run for the outage
    assert [s.minute for s in slots_to_run(slots, now, "skip", timedelta(seconds=10))] == []
    assert [s.minute for s in slots_to_run(slots, now, "run_once", timedelta(seconds=10))] == [5]
    assert [s.minute for s in slots_to_run(slots[-1:], now, "skip", timedelta(seconds=31))] == [5]  # late, not missed
    assert slots_to_run([], now, "run_once", grace) == []
