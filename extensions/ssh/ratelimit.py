"""Failed sign-ins: too many from one source address within a window lock that address out
for a while; too many for one user only slow that user's further failures down (issue 12,
finding 7: anyone could lock any user out, valid key included, by failing on purpose).

A user's valid key or token is never refused or delayed: the delay applies to an answer
that is already a refusal, and the next allowed failure is shared by all connections, so
parallel guessing gets no faster than `max_failures` per `window`.

Pure apart from the clock (wall-clock seconds, so lockouts can be saved and restored across
a restart; tests replace it). Saving and waiting are the caller's: `failed` returns the new
lockouts, `hold` how long to hold a refusal back.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


def source_key(address: str) -> str:
    return f"source:{address}"


@dataclass
class FailureLimiter:
    max_failures: int
    window: float  # seconds over which failures count
    lockout: float  # seconds a locked source stays locked
    clock: Callable[[], float] = time.time
    _failures: dict[str, deque] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)
    _user_next: dict[str, float] = field(default_factory=dict)  # when a user's next failure may be answered

    @property
    def spacing(self) -> float:
        """Seconds between a user's answered failures once over the limit."""
        return self.window / max(self.max_failures, 1)

    def restore(self, locks: dict[str, float]) -> None:
        """Lockouts saved before a restart: {source key: locked until (clock seconds)}."""
        now = self.clock()
        self._locked_until.update({key: until for key, until in locks.items() if until > now})

    def locked_for(self, source: str) -> float:
        """Seconds until the source is unlocked (0 when it is not locked)."""
        now = self.clock()
        until = self._locked_until.get(source)
        if until is None:
            return 0.0
        if until <= now:
            del self._locked_until[source]
            return 0.0
        return until - now

    def failed(self, source: str, user: str | None = None) -> dict[str, float]:
        """Count one failure; return the sources it locked out: {key: locked until}."""
        now = self.clock()
        newly_locked = {}
        if self._count(source, now) >= self.max_failures and source not in self._locked_until:
            self._locked_until[source] = now + self.lockout
            self._failures[source].clear()
            newly_locked[source] = now + self.lockout
        if user is not None:
            self._count(f"user:{user}", now)
        self._forget_old(now)
        return newly_locked

    def hold(self, user: str) -> float:
        """Seconds to hold back a refusal for `user` (0 below the limit). Each call over the
        limit takes the next free slot, `spacing` apart, whichever connection asks."""
        key = f"user:{user}"
        now = self.clock()
        recent = [at for at in self._failures.get(key, ()) if at > now - self.window]
        if len(recent) < self.max_failures:
            return 0.0
        answer_at = max(now, self._user_next.get(key, now))
        self._user_next[key] = answer_at + self.spacing
        return answer_at - now

    def succeeded(self, user: str) -> None:
        """A successful sign-in clears that user's failures (never an address's)."""
        self._failures.pop(f"user:{user}", None)
        self._user_next.pop(f"user:{user}", None)

    def _count(self, key: str, now: float) -> int:
        recent = self._failures.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        return len(recent)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, recent in self._failures.items() if not recent or recent[-1] <= now - self.window]:
            del self._failures[key]
        for key in [k for k, at in self._user_next.items() if at <= now - self.window]:
            del self._user_next[key]
