"""Before each spawn on this machine: the user's project groups, gates and `~/projects/<name>` links.

The hub runs this `pre_spawn_hook` (as root) before the spawner starts the server, so the
server starts with the supplementary groups of the projects its user belongs to right now.
Roles come from gpulab's database and the user's hub groups (for group members), the same
truth the projects service uses, and the change happens under the storage lock the
service takes too (storage/local.py).

Both backends that run servers as the user's system account get it, through what they both
expose (`HostAccount`): the local backend's processes and the docker backend's containers,
which read the account's groups when they start, after this hook. A member's container also
gets the projects root bind-mounted at the same path, so the links resolve inside; who may
open what is still the host account's groups and the gates' and folders' ACLs. Someone who
joins their first project while their container runs sees it after a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gpulab.spawner.accounts import ensure_account
from gpulab.spawner.backends.docker.spawner import ContainerSpawner
from gpulab.spawner.backends.local.spawner import LocalSpawner

from .membership import GROUP_PREFIX
from .sign_in import StoreHook
from .storage import FOLDER_BACKENDS
from .storage.local import storage_from_settings

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from .service_settings import StorageSettings

# The spawners whose servers run as the user's system account on this machine.
HOST_ACCOUNT_SPAWNERS = (LocalSpawner, ContainerSpawner)


class HostAccount(Protocol):
    """What this hook needs of a spawner (LocalSpawner and ContainerSpawner have it)."""

    isolated: bool  # root: one system account per user
    account: str  # the system account's name
    home: Path
    home_root: str


class ProjectFolders(StoreHook):
    """`c.Spawner.pre_spawn_hook`."""

    def __init__(self, database_url: str, storage: StorageSettings):
        super().__init__(database_url)
        self.storage_settings = storage

    async def __call__(self, spawner) -> None:
        if not isinstance(spawner, HOST_ACCOUNT_SPAWNERS):
            return  # KubeSpawner: no account on this machine
        if self.storage_settings.backend not in FOLDER_BACKENDS:
            return
        user = spawner.user.name
        groups = [g.name for g in spawner.user.groups if not g.name.startswith(GROUP_PREFIX)]
        roles = self.store.roles_of(user, groups)
        await prepare_account(spawner)
        storage = storage_from_settings(self.storage_settings)
        await asyncio.to_thread(storage.apply_user, user, roles)
        if isinstance(spawner, ContainerSpawner) and any(storage.folder(slug).is_dir() for slug in roles):
            # The whole root, not each folder: every lookup inside still passes the gates (storage/local.py).
            spawner.add_mount(str(storage.root))
        if roles:
            spawner.log.info("%s: projects %s", spawner._log_name, ", ".join(f"{s} ({r})" for s, r in sorted(roles.items())))


async def prepare_account(spawner: HostAccount) -> None:
    """The account and home the server will run as, made before groups and links are given to them."""
    if spawner.isolated:
        await ensure_account(spawner.account, Path(spawner.home_root or "/home"))
    else:
        spawner.home.mkdir(mode=0o700, parents=True, exist_ok=True)
