"""The usage service process: `python -m gpulab.extensions.usage.service` (the hub starts it).

It samples the GPUs held through the ledger every `sample_interval` seconds (in a thread: NVML
and the database block) and serves the Usage page, its REST API and the metrics at
/services/usage/. Without an inventory (Kubernetes) it reports the intervals only.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

from tornado import web

from gpulab.compute.inventory import CachedInventory, load_inventory
from gpulab.compute.usage_sampler import UsageSampler
from gpulab.db import make_engine, make_session_factory
from gpulab.extensions.service.lifetime import end_with_hub
from gpulab.extensions.service.runner import build_application, configure_logging, repeat, serve, service_settings

from . import api
from .core import UsageCore

log = logging.getLogger("gpulab.usage")


def build(settings: dict):
    """The application and the sampler (None without an inventory), from the hub's settings."""
    sessions = make_session_factory(make_engine(settings["database_url"]))
    sampler = None
    if settings.get("gpu_inventory"):
        sampler = UsageSampler(sessions, CachedInventory(load_inventory(settings["gpu_inventory"])),
                               settings["idle_threshold"], settings["retention_days"])
    core = UsageCore(sessions, settings["idle_threshold"], lambda: sampler.latest if sampler else [])
    package = resources.files("gpulab.extensions.usage")
    static = [(r"/static/(.*)", web.StaticFileHandler, {"path": str(package / "static")})]
    app = build_application(api.ROUTES + static, [str(package / "templates")], core=core)
    return app, sampler


async def main() -> None:
    settings = service_settings()
    configure_logging("usage", settings.get("log_level", "INFO"))
    app, sampler = build(settings)
    # (the database may be busy, or NVML gone for a moment: the next sample tries again)
    task = asyncio.create_task(repeat(settings["sample_interval"], lambda: asyncio.to_thread(sampler.sample_once),
                                      log, "sample GPU usage")) if sampler else None
    log.info("usage: sampling every %ss", settings["sample_interval"] if sampler else "(no inventory: not)")
    await serve(app, on_stop=task.cancel if task else None)


if __name__ == "__main__":
    end_with_hub()
    asyncio.run(main())
