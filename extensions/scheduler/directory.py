"""Who a hub user is (groups, admin), asked of the hub with the scheduler's own token."""

from __future__ import annotations

import time
from typing import Awaitable, Callable, TypeVar
from urllib.parse import quote

from gpulab.hub_config.services.errors import NotFound
from gpulab.hub_config.client import AsyncHubClient, ClientError

from .core import Who

T = TypeVar("T")


class HubDirectory:
    """Cached for a few seconds: a membership change reaches the scheduler without a restart.
    Asynchronous (gpulab's one asynchronous hub client): the service's event loop never waits
    on the hub."""

    def __init__(self, hub: AsyncHubClient, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.hub = hub
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple, tuple[float, object]] = {}

    async def _get(self, key: tuple, fetch: Callable[[], Awaitable[T]]) -> T:
        cached = self._cache.get(key)
        if cached and self.clock() - cached[0] < self.ttl:
            return cached[1]  # type: ignore[return-value]  # (stored by this key's fetch)
        value = await fetch()
        self._cache[key] = (self.clock(), value)
        return value

    async def who(self, name: str) -> Who:
        async def fetch() -> Who:
            try:
                user = await self.hub.request("GET", f"users/{quote(name, safe='')}")
            except ClientError as error:
                if error.status == 404:
                    raise NotFound(f"no hub user {name!r}") from None
                raise
            return Who(user["name"], tuple(user.get("groups") or ()), bool(user.get("admin")))

        return await self._get(("user", name), fetch)

    async def members(self, group: str) -> list[str]:
        async def fetch() -> list[str]:
            try:
                return list((await self.hub.request("GET", f"groups/{quote(group, safe='')}")).get("users", []))
            except ClientError as error:
                if error.status == 404:
                    return []
                raise

        return await self._get(("group", group), fetch)
