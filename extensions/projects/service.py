"""The projects service process: `python -m gpulab.extensions.projects.service` (the hub starts it).

It serves the API and the pages at /services/projects/, and keeps the hub's groups and
the project folders in step with the database: after every change, at start, and every
`projects.reconcile_interval` seconds. When the hub is root it runs as its own account and
asks the root helper (storage/helper.py) to change the folders; otherwise it changes them itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from gpulab.db import make_engine, make_session_factory
from gpulab.hub_config.services.config import runs_as_own_account
from gpulab.hub_config.services.lifetime import end_with_hub
from gpulab.hub_config.services.runner import build_application, configure_logging, repeat, serve, service_settings

from . import api, pages
from .core import Projects
from .hub_api import HubApi
from .shared_servers import SharedServerStore
from .store import ProjectStore
from .storage import FOLDER_BACKENDS
from .sync import NoStorage, Sync
from .service_settings import ProjectsServiceSettings

log = logging.getLogger("gpulab.projects")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def build(given: ProjectsServiceSettings | Mapping[str, Any], environ=os.environ):
    """The application and the synchronizer, from the settings the hub handed over."""
    settings = ProjectsServiceSettings.of(given)
    sessions = make_session_factory(make_engine(settings.database_url))
    store = ProjectStore(sessions, utc_now)
    shares = SharedServerStore(sessions, utc_now)
    hub = HubApi(environ["JUPYTERHUB_API_URL"], environ["JUPYTERHUB_API_TOKEN"])
    storage = make_storage(settings, environ)
    sync = Sync(store, shares, hub, storage)
    projects = Projects(store, shares, hub, sync, list(settings.creators), environ.get("JUPYTERHUB_BASE_URL", "/"))
    templates = str(resources.files("gpulab.extensions.projects") / pages.TEMPLATES)
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/projects/")
    app = build_application(api.ROUTES + pages.ROUTES, [templates], projects=projects, projects_prefix=prefix)
    return app, sync


def make_storage(given: ProjectsServiceSettings | Mapping[str, Any], environ=os.environ):
    """Folders through the root helper when this process runs as its own account (the hub is
    root), in this process otherwise; none on Kubernetes."""
    settings = ProjectsServiceSettings.of(given)
    if settings.storage.backend not in FOLDER_BACKENDS:
        return NoStorage()
    if runs_as_own_account(environ):
        from .storage.helper import HelperStorage

        return HelperStorage(settings.storage_helper)
    from .storage.local import storage_from_settings

    return storage_from_settings(settings.storage)


async def main() -> None:
    settings = ProjectsServiceSettings.of(service_settings())
    configure_logging("projects", settings.log_level)
    app, sync = build(settings)
    # (the hub may be restarting: the next pass tries again)
    reconciler = asyncio.create_task(repeat(settings.reconcile_interval, sync.everything, log,
                                            "bring projects in step with the hub"))
    await serve(app, on_stop=reconciler.cancel)


if __name__ == "__main__":
    end_with_hub()
    asyncio.run(main())
