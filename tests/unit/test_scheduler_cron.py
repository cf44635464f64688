"""Cron slots with time zones, and slots missed while the scheduler was down."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gpulab.extensions.scheduler.cron import due_slots, next_slot, slots_to_run, validate
from gpulab.extensions.service.errors import Invalid

UTC = timezone.utc


def test_validation_names_the_problem():
    validate("0 6 * * 1-5", "Europe/Berlin")
    with pytest.raises(Invalid, match="invalid cron expression '61 \\* \\* \\* \\*'"):
        validate("61 * * * *", "UTC")
    with pytest.raises(Invalid, match="expected 5 fields"):
        validate("* * * *", "UTC")
    with pytest.raises(Invalid, match="unknown time zone 'Mars/Olympus'"):
        validate("0 6 * * *", "Mars/Olympus")


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
    assert [s.minute for s in slots_to_run(slots, now, "run_once", grace)] == [4, 5]
    assert slots_to_run([], now, "run_once", grace) == []
