"""What the hub hands the projects service and its storage helper (GPULAB_SERVICE_SETTINGS),
typed: config.py builds it, the service and the helper read it back at their entry; the hub's
spawn hook gets the same storage settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gpulab.hub_config.typed_settings import LogLevel, Model


class StorageSettings(Model):
    """Where project folders live, and the accounts and homes they are shared with."""

    backend: Literal["local", "docker", "kubernetes"] = "local"
    root: str = ""  # projects.local.root ("" the default beside the data directory or homes)
    group_prefix: str = ""
    account_prefix: str = "gpulab-"
    home_root: str = ""
    data_dir: str = ""


class ProjectsServiceSettings(Model):
    database_url: str = ""
    log_level: LogLevel = "INFO"
    creators: tuple[str, ...] = ()
    reconcile_interval: int = 60
    storage: StorageSettings = Field(default_factory=StorageSettings)
    storage_helper: str = ""  # the helper's socket


class StorageHelperSettings(Model):
    storage: StorageSettings = Field(default_factory=StorageSettings)
    socket: str = ""
    client: str = ""  # the service's account, the one the helper answers
    log_level: LogLevel = "INFO"
