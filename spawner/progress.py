"""Spawn progress events for JupyterHub's progress API (the spawn page's progress bar)."""

from __future__ import annotations

import asyncio
import logging


class ProgressMixin:
    """Lets `start()` report steps with `emit_progress`; `progress()` streams them.

    JupyterHub stops reading `progress()` once the spawn finishes, so the stream never
    ends by itself. Events are kept per spawn: they are cleared in JupyterHub's pre-spawn
    hook, which runs once before each `start()`.
    """

    log: logging.Logger  # (the spawner's)
    _log_name: str

    def run_pre_spawn_hook(self):
        self.reset_progress()
        return super().run_pre_spawn_hook()

    def reset_progress(self) -> None:
        self._progress_events: list[dict] = []
        self._progress_changed = asyncio.Event()

    def emit_progress(self, percent: int, message: str) -> None:
        if not hasattr(self, "_progress_events"):
            self.reset_progress()
        self._progress_events.append({"progress": percent, "message": message})
        self.log.info("%s: %s", self._log_name, message)
        self._progress_changed.set()

    async def progress(self):
        if not hasattr(self, "_progress_events"):
            self.reset_progress()
        sent = 0
        while True:
            if sent > len(self._progress_events):
                sent = 0  # a new spawn replaced the list
            while sent < len(self._progress_events):
                yield self._progress_events[sent]
                sent += 1
            self._progress_changed.clear()
            try:
                await asyncio.wait_for(self._progress_changed.wait(), timeout=1)
            except asyncio.TimeoutError:
                pass
