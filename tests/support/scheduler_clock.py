"""The scheduler's unit tests' time and directory: a fixed start, a clock the test moves, a directory of literal users."""

from __future__ import annotations

from datetime import datetime, timezone

from gpulab.extensions.scheduler.core import Who


T0 = datetime(2026, 11, 22, 12, 0, 30, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


class FixedDirectory:
    async def who(self, name):
        return Who(name)

    async def members(self, group):
        return []
