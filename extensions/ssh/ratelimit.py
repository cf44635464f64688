"""Failed sign-ins are counted per source address and per user; too many within a window
lock that address or user out for a while. Pure apart from the clock, which tests replace."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class FailureLimiter:
    max_failures: int
    window: float  # seconds over which failures count
    lockout: float  # seconds a locked key stays locked
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def locked_for(self, *keys: str) -> float:
        """Seconds until every key is unlocked (0 when none is locked)."""
        now = self.clock()
        remaining = 0.0
        for key in keys:
            until = self._locked_until.get(key)
            if until is None:
                continue
            if until <= now:
                del self._locked_until[key]
            else:
                remaining = max(remaining, until - now)
        return remaining

    def failed(self, *keys: str) -> list[str]:
        """Count one failure against each key; return the keys this failure locked out."""
        now = self.clock()
        newly_locked = []
        for key in keys:
            recent = self._failures.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= self.max_failures and key not in self._locked_until:
                self._locked_until[key] = now + self.lockout
                recent.clear()
                newly_locked.append(key)
        self._forget_old(now)
        return newly_locked

    def succeeded(self, key: str) -> None:
        """A successful sign-in clears that key's failures (a user's, never an address's)."""
        self._failures.pop(key, None)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, recent in self._failures.items() if not recent or recent[-1] <= now - self.window]:
            del self._failures[key]
