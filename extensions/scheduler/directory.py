"""Who a hub user is (groups, admin), asked of the hub with the scheduler's own token."""

from __future__ import annotations

import time
from typing import Callable

from gpulab.extensions.service.errors import NotFound
from gpulab.hub_config.client import ClientError, HubClient

from .core import Who


class HubDirectory:
    """Cached for a few seconds: a membership change reaches the scheduler without a restart."""

    def __init__(self, hub: HubClient, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.hub = hub
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple, tuple[float, object]] = {}

    def _get(self, key: tuple, fetch):
        cached = self._cache.get(key)
        if cached and self.clock() - cached[0] < self.ttl:
            return cached[1]
        value = fetch()
        self._cache[key] = (self.clock(), value)
        return value

    def who(self, name: str) -> Who:
        def fetch():
            try:
                user = self.hub.request("GET", f"hub/api/users/{name}")
            except ClientError as error:
                if error.status == 404:
                    raise NotFound(f"no hub user {name!r}") from None
                raise
            return Who(user["name"], tuple(user.get("groups") or ()), bool(user.get("admin")))

        return self._get(("user", name), fetch)

    def members(self, group: str) -> list[str]:
        def fetch():
            try:
                return list(self.hub.request("GET", f"hub/api/groups/{group}").get("users", []))
            except ClientError as error:
                if error.status == 404:
                    return []
                raise

        return self._get(("group", group), fetch)
