"""The scheduler service process: the REST API and pages, and the dispatcher loop, in one process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gpulab.db import make_engine, make_session_factory
from gpulab.extensions.projects.membership import project_roles
from gpulab.extensions.service.lifetime import end_with_hub
from gpulab.extensions.service.runner import build_application, configure_logging, serve, service_settings
from gpulab.hub_config.client import HubClient
from gpulab.spawner.inventory import CachedInventory, load_inventory
from gpulab.spawner.ledger import Ledger
from gpulab.spawner.local import singleuser_bin_dir

from .api import ROUTES
from .core import RunStorage, SchedulerCore
from .directory import HubDirectory
from .dispatcher import Dispatcher
from .executors.kubernetes import KubernetesExecutor
from .executors.local import LocalExecutor
from .user_files import UserFiles
from .notify import Notifier
from .tracking import MlflowForRuns

TEMPLATES = str(Path(__file__).parent / "templates")


def python_exists(python: str) -> bool:
    return (singleuser_bin_dir(python) / "python").exists()


def make_executor(settings: dict, log, directory: HubDirectory, sessions, storage: RunStorage):
    """(executor, GPU ledger): local processes claim GPUs here; on Kubernetes the cluster allocates them."""
    if settings["spawner"]["backend"] != "kubernetes":
        return LocalExecutor(settings, log), Ledger(sessions)

    async def roles_of(owner: str) -> dict:
        who = await asyncio.to_thread(directory.who, owner)
        return project_roles(list(who.groups))

    return KubernetesExecutor(settings, log, roles_of, lambda run_id: storage.path(run_id, "log.txt")), None


def mlflow_environment(settings: dict, hub: HubClient, log):
    """Each run's MLflow variables, when the hub runs MLflow (every run is then an MLflow run)."""
    if not settings["mlflow_tracking_uri"]:
        return None
    mlflow = MlflowForRuns(hub, settings["mlflow_tracking_uri"], log)
    return lambda schedule: mlflow.environment(schedule.owner, schedule.name, schedule.project,
                                               schedule.timeout_seconds)


async def main() -> None:
    settings = service_settings()
    log = configure_logging("scheduler", settings["hub"]["log_level"])
    sessions = make_session_factory(make_engine(settings["database_url"]))
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    hub = HubClient(os.environ["JUPYTERHUB_API_URL"].rsplit("hub/api", 1)[0], token)
    storage = RunStorage(Path(settings["hub"]["data_dir"]) / "scheduler" / "runs")
    inventory = CachedInventory(load_inventory(settings["spawner"]["local"]["gpu_inventory"]))
    directory = HubDirectory(hub)
    executor, ledger = make_executor(settings, log, directory, sessions, storage)
    on_kubernetes = isinstance(executor, KubernetesExecutor)
    if on_kubernetes:
        await executor.start_polling()
    # On Kubernetes environments are images, and the nodes' drivers decide what can run.
    core = SchedulerCore(sessions, settings, directory, storage,
                         python_exists=(lambda python: True) if on_kubernetes else python_exists,
                         driver=executor.driver if on_kubernetes else inventory.driver)
    dispatcher = Dispatcher(core, executor, ledger, inventory.devices,
                            Notifier(settings["scheduler"]["notifications"], log), log, settings["runner_url"],
                            extra_env=mlflow_environment(settings, hub, log))
    core.wake = dispatcher.wake
    loop = asyncio.get_running_loop()
    executor.on_exit = lambda: loop.call_soon_threadsafe(dispatcher.wake)
    app = build_application(ROUTES, [TEMPLATES], core=core, user_files=None if on_kubernetes else UserFiles(settings))
    loop_task = asyncio.ensure_future(dispatcher.run_forever())
    await asyncio.to_thread(core.render_html, b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    log.info("scheduler ready: %d profiles, %d environments", len(core.profiles), len(core.environments))
    await serve(app, on_stop=loop_task.cancel)


if __name__ == "__main__":
    end_with_hub()
    asyncio.run(main())
