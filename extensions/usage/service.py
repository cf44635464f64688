"""The usage service process: `python -m gpulab.extensions.usage.service` (the hub starts it).

Every `sample_interval` seconds it samples the GPUs held: on one machine those held through the
ledger, read through NVML (in a thread: NVML and the database block); on Kubernetes the pods
of gpulab's namespace, read through the DCGM exporter where one is configured (cluster.py).
It serves the Usage page, its REST API and the metrics at /services/usage/.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from importlib import resources
from typing import Any, Awaitable, Callable

from tornado import web

from gpulab.compute.inventory import CachedInventory, load_inventory
from gpulab.compute.usage_sampler import HeldDevice, UsageSampler
from gpulab.db import make_engine, make_session_factory
from gpulab.hub_config.services.lifetime import end_with_hub
from gpulab.hub_config.services.runner import build_application, configure_logging, repeat, serve, service_settings
from gpulab.spawner.backends import backend

from . import api
from .core import UsageCore
from .service_settings import UsageServiceSettings

log = logging.getLogger("gpulab.usage")


def cluster_usage(settings: UsageServiceSettings, sessions):
    """The pods of gpulab's namespace, with DCGM's readings where `dcgm_exporter_url` is set."""
    import aiohttp  # (as kubernetes_asyncio below: not loaded by every local start)
    from kubespawner.clients import load_config, shared_client

    from gpulab.spawner.backends.kubernetes.executor import default_namespace

    from .cluster import ClusterUsage, scrape_dcgm

    load_config()
    namespace = settings.namespace or default_namespace()

    async def list_pods() -> list[dict]:
        listed = await shared_client("CoreV1Api").list_namespaced_pod(namespace, _preload_content=False)
        return (await listed.json())["items"]

    async def read_dcgm():
        async with aiohttp.ClientSession() as session:
            return await scrape_dcgm(session, settings.dcgm_exporter_url)

    return ClusterUsage(sessions, settings.idle_threshold, list_pods,
                        read_dcgm if settings.dcgm_exporter_url else None, settings.retention_days)


def build(given: UsageServiceSettings | Mapping[str, Any]):
    """The application and a function taking one sample (None: nothing to sample), from the hub's settings."""
    settings = UsageServiceSettings.of(given)
    sessions = make_session_factory(make_engine(settings.database_url))
    sample: Callable[[], Awaitable] | None = None
    latest: Callable[[], list[HeldDevice]] = list
    measured_by = ""
    if not backend(settings.backend).machine_local:
        cluster = cluster_usage(settings, sessions)
        sample, latest = cluster.sample_once, lambda: cluster.latest
        measured_by = "DCGM exporter" if settings.dcgm_exporter_url else ""
    elif settings.gpu_inventory:
        sampler = UsageSampler(sessions, CachedInventory(load_inventory(settings.gpu_inventory)),
                               settings.idle_threshold, settings.retention_days)
        sample, latest, measured_by = (lambda: asyncio.to_thread(sampler.sample_once)), (lambda: sampler.latest), "NVML"
    core = UsageCore(sessions, settings.idle_threshold, latest, measured_by=measured_by)
    package = resources.files("gpulab.extensions.usage")
    static = [(r"/static/(.*)", web.StaticFileHandler, {"path": str(package / "static")})]
    app = build_application(api.ROUTES + static, [str(package / "templates")], core=core)
    return app, sample


async def main() -> None:
    settings = UsageServiceSettings.of(service_settings())
    configure_logging("usage", settings.log_level)
    app, sample = build(settings)
    # (the database may be busy, NVML or the cluster's API gone for a moment: the next sample tries again)
    task = asyncio.create_task(repeat(settings.sample_interval, sample, log, "sample GPU usage")) if sample else None
    log.info("usage: sampling every %ss", settings.sample_interval if sample else "(no inventory: not)")
    await serve(app, on_stop=task.cancel if task else None)


if __name__ == "__main__":
    end_with_hub()
    asyncio.run(main())
