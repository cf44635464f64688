"""The local backend as a `ComputeBackend`: its spawner, its hub settings and its executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from traitlets.config import Config

from gpulab.spawner.backends.protocol import RunServices

if TYPE_CHECKING:  # typed settings (pydantic) only where a hub is configured
    from gpulab.hub_config.typed_settings import Settings

SPAWNER_CLASS = "gpulab.spawner.backends.local.spawner.GpulabLocalSpawner"


def configure_local_spawner(s: Settings, c: Config) -> None:
    """The local spawner's traits."""
    local = s.spawner.local
    c.LocalSpawner.account_prefix = local.account_prefix
    c.LocalSpawner.home_root = local.home_root
    c.LocalSpawner.python = local.python
    c.LocalSpawner.warm_start = local.warm_start
    c.LocalSpawner.data_dir = s.hub.data_dir
    c.LocalSpawner.log_dir = str(Path(s.hub.data_dir, "logs", "servers"))


def local_executor(services: RunServices, in_images: bool):
    """Runs as the owner's processes (or, `in_images`, containers), GPUs claimed from the ledger."""
    from gpulab.compute.inventory import CachedInventory, load_inventory
    from gpulab.compute.ledger import Ledger, LocalPool

    from .executor import LocalExecutor
    from .standby import Standbys

    settings = services.settings
    inventory = CachedInventory(load_inventory(settings.spawner.local.gpu_inventory))
    # Standby runners (the warm path) beside the runs' folders: a standby's log becomes its run's log.txt
    warm = settings.scheduler
    standbys = None if in_images or not warm.standby_runners else Standbys(
        settings.runner_url.rstrip("/") + "/", services.state_dir / "standbys",
        max_standbys=warm.standby_runners, idle_seconds=warm.standby_idle_seconds, log=services.log)
    return LocalExecutor(services.launcher, LocalPool(Ledger(services.sessions), inventory.devices),
                         inventory.driver, in_images=in_images, standbys=standbys, log=services.log)


class LocalBackend:
    name = "local"
    spawner_class = SPAWNER_CLASS
    machine_local = True

    def configure(self, s: Settings, c: Config) -> None:
        configure_local_spawner(s, c)

    def executor(self, services: RunServices):
        return local_executor(services, in_images=False)


BACKEND = LocalBackend()
