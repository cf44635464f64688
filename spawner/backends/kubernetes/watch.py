"""A local copy of a set of Kubernetes objects, kept current by a watch.

List once, then watch from that list's resourceVersion; after any error (or the server
closing the watch), list again. Page renders read the copy and never call the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable

from kubernetes_asyncio import watch

log = logging.getLogger("gpulab.k8s")


def object_key(obj: dict) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class ResourceWatch:
    def __init__(self, list_call: Callable, kind: str, timeout_seconds: int = 300):
        self.list_call = list_call
        self.kind = kind
        self.timeout_seconds = timeout_seconds
        self.objects: dict[str, dict] = {}
        self.loaded = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def values(self) -> list[dict]:
        return list(self.objects.values())

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                version = await self._list()
                delay = 0.5
                stream = watch.Watch().stream(self.list_call, resource_version=version,
                                              timeout_seconds=self.timeout_seconds)
                async for event in stream:
                    self._apply(event["type"], event["raw_object"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watching %s failed; listing again in %.1fs", self.kind, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def _list(self) -> str | None:
        response = await self.list_call(_preload_content=False)
        listing = json.loads(await response.read())
        self.objects = {object_key(o): o for o in listing.get("items", [])}
        self.loaded.set()
        return listing.get("metadata", {}).get("resourceVersion")

    def _apply(self, kind: str, obj: dict) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self.objects[object_key(obj)] = obj
        elif kind == "DELETED":
            self.objects.pop(object_key(obj), None)
