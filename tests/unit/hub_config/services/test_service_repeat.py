"""A service's background loop (hub_config/services/runner.repeat): a failing step is logged and
the next one runs; the loop ends only when cancelled."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gpulab.hub_config.services.runner import repeat


async def test_a_failing_step_is_logged_and_the_next_one_runs(caplog):
    calls = []

    async def step():
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("the hub is restarting")

    task = asyncio.create_task(repeat(0.01, step, logging.getLogger("test.repeat"), "reconcile"))
    with caplog.at_level(logging.ERROR, "test.repeat"):
        while len(calls) < 4:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [r.getMessage() for r in caplog.records] == ["could not reconcile; retrying in 0.01s"]
    assert "the hub is restarting" in caplog.text
