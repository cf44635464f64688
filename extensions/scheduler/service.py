"""The scheduler service process: the REST API and pages, and the dispatcher loop, in one process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gpulab.db import make_engine, make_session_factory
from gpulab.extensions.projects.membership import project_roles
from gpulab.hub_config.services.config import runs_as_own_account
from gpulab.hub_config.services.lifetime import end_with_hub
from gpulab.hub_config.services.runner import build_application, configure_logging, serve, service_settings
from gpulab.hub_config.client import AsyncHubClient
from gpulab.spawner.backends import backend
from gpulab.spawner.backends.docker.runner_container import ContainerEngine
from gpulab.spawner.backends.local.runner_process import ProcessLauncher
from gpulab.spawner.backends.protocol import Executor, RunServices

from .api import ROUTES
from .core import RunStorage, SchedulerCore
from .directory import HubDirectory
from .dispatcher import Dispatcher
from .notify import Notifier
from .service_settings import SchedulerServiceSettings
from .tracking import MlflowForRuns
from .user_files import UserFiles

TEMPLATES = str(Path(__file__).parent / "templates")


def make_launcher(settings: SchedulerServiceSettings, log):
    """Who starts runners as their owners and reads their notebooks: the root helper when this
    service runs as its own account (the hub is root), else this process (every run and home
    is then the service's own)."""
    if runs_as_own_account():
        from .launcher import HelperLauncher

        launcher = HelperLauncher(settings.launcher_socket or "")
        return launcher, launcher
    local = settings.spawner.local
    return ProcessLauncher(local.account_prefix, local.home_root, settings.hub.data_dir, log,
                           ContainerEngine.from_settings(settings)), UserFiles(settings)


def make_executor(settings: SchedulerServiceSettings, log, directory: HubDirectory, sessions, storage: RunStorage,
                  launcher) -> Executor:
    """The executor of the backend spawner.backend names (spawner/backends/<name>/)."""

    async def roles_of(owner: str) -> dict:
        who = await directory.who(owner)
        return project_roles(list(who.groups))

    return backend(settings.spawner.backend).executor(RunServices(
        settings, log, sessions, run_log=lambda run_id: storage.path(run_id, "log.txt"),
        state_dir=storage.root.parent, roles_of=roles_of, launcher=launcher))


def mlflow_environment(settings: SchedulerServiceSettings, hub: AsyncHubClient, log):
    """Each run's MLflow variables, when the hub runs MLflow (every run is then an MLflow run)."""
    if not settings.mlflow_tracking_uri:
        return None
    mlflow = MlflowForRuns(hub, settings.mlflow_tracking_uri, log)
    return lambda schedule: mlflow.environment(schedule.owner, schedule.name, schedule.project,
                                               schedule.timeout_seconds, schedule.kind)


async def main() -> None:
    settings = SchedulerServiceSettings.of(service_settings())
    log = configure_logging("scheduler", settings.hub.log_level)
    sessions = make_session_factory(make_engine(settings.database_url))
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    hub = AsyncHubClient(os.environ["JUPYTERHUB_API_URL"], token)
    storage = RunStorage(Path(settings.hub.data_dir) / "scheduler" / "runs")
    directory = HubDirectory(hub)
    launcher, user_files = make_launcher(settings, log) if backend(settings.spawner.backend).machine_local \
        else (None, None)
    executor = make_executor(settings, log, directory, sessions, storage, launcher)
    await executor.prepare()
    core = SchedulerCore(sessions, settings, directory, storage, python_exists=executor.python_exists,
                         driver=executor.driver)
    dispatcher = Dispatcher(core, executor, Notifier(settings.scheduler.notifications, log), log,
                            settings.runner_url, extra_env=mlflow_environment(settings, hub, log))
    core.wake = dispatcher.wake
    loop = asyncio.get_running_loop()

    def on_exit() -> None:
        loop.call_soon_threadsafe(dispatcher.wake)

    executor.on_exit = on_exit
    app = build_application(ROUTES, [TEMPLATES], core=core, user_files=user_files)
    loop_task = asyncio.ensure_future(dispatcher.run_forever())
    await asyncio.to_thread(core.render_html, b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    log.info("scheduler ready: %d profiles, %d environments", len(core.profiles), len(core.environments))
    await serve(app, on_stop=loop_task.cancel)


if __name__ == "__main__":
    end_with_hub()
    asyncio.run(main())
