"""Memory in front of MLflow's permission checks, so that logging through gpulab costs about
what it costs on an MLflow server without authentication.

MLflow's basic-auth app decides every request from its databases: it loads the whole run
to learn its experiment, reads the user's admin flag, then the user's grants. Decisions
are still MLflow's; gpulab only remembers them:

- a run never moves to another experiment, so its requirements are remembered (LRU);
- a decision (user, resource, requirements) is remembered for `ttl` seconds, the same
  bound the hub identity cache already puts on membership changes. A user's decisions are
  forgotten when their hub groups or admin flag change, and all of them when gpulab grants
  a project experiment;
- whether the caller is an admin is what the hub said (gpulab keeps MLflow's flag equal).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable


class TimedCache:
    """A thread-safe mapping whose entries expire after `ttl` seconds (LRU beyond `max_entries`)."""

    MISSING = object()

    def __init__(self, ttl: float | None, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000):
        self.ttl = ttl  # None: never expire
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return self.MISSING
            expires, value = entry
            if self.ttl is not None and expires <= self.clock():
                del self._entries[key]
                return self.MISSING
            self._entries.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        if self.ttl == 0:
            return
        expires = self.clock() + self.ttl if self.ttl is not None else 0.0
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard_where(self, predicate: Callable[[Any], bool]) -> None:
        with self._lock:
            for key in [k for k in self._entries if predicate(k)]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Decisions:
    """Remembered permission decisions; keys start with the user name."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.cache = TimedCache(ttl, clock)

    def forget_user(self, name: str) -> None:
        self.cache.discard_where(lambda key: key[0] == name)

    def forget_all(self) -> None:
        self.cache.clear()


def install(auth_module, decisions: Decisions, is_admin: Callable[[], bool | None]) -> None:
    """Wrap three functions of `mlflow.server.auth` (module globals, looked up at each call).

    `is_admin()` returns the hub's admin flag for the current request, or None outside one.
    """
    authorize = auth_module.authorize
    run_requirement = auth_module._run_requirement
    sender_is_admin = auth_module.sender_is_admin
    runs = TimedCache(ttl=None)

    def remembered_authorize(username, anchor, requirements):
        key = (username, anchor, tuple(requirements))
        allowed = decisions.cache.get(key)
        if allowed is TimedCache.MISSING:
            allowed = authorize(username, anchor, requirements)
            decisions.cache.put(key, allowed)
        return allowed

    def remembered_run_requirement(run_id, action):
        key = (run_id, action)
        found = runs.get(key)
        if found is TimedCache.MISSING:
            found = run_requirement(run_id, action)
            if found is None:
                return None  # a missing run is not remembered: it may be created later
            found = (found[0], tuple(found[1]))
            runs.put(key, found)
        anchor, requirements = found
        return anchor, list(requirements)  # a fresh list: callers append to it

    def admin_from_hub():
        admin = is_admin()
        return sender_is_admin() if admin is None else admin

    auth_module.authorize = remembered_authorize
    auth_module._run_requirement = remembered_run_requirement
    auth_module.sender_is_admin = admin_from_hub
