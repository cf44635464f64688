"""Before each local spawn: the user's project groups, gates and `~/projects/<name>` links.

The hub runs this `pre_spawn_hook` (as root) before the spawner starts the server, so the
server starts with the supplementary groups of the projects its user belongs to right now.
Roles come from gpulab's database and the user's hub groups (for group members), the same
truth the projects service uses, and the change happens under the storage lock the
service takes too (storage/local.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gpulab.spawner.accounts import ensure_account
from gpulab.spawner.local import LocalSpawner

from .membership import GROUP_PREFIX
from .sign_in import StoreHook
from .storage.local import storage_from_settings


class ProjectFolders(StoreHook):
    """`c.Spawner.pre_spawn_hook`."""

    def __init__(self, database_url: str, storage: dict):
        super().__init__(database_url)
        self.storage_settings = storage

    async def __call__(self, spawner) -> None:
        if not isinstance(spawner, LocalSpawner) or self.storage_settings["backend"] != "local":
            return
        user = spawner.user.name
        groups = [g.name for g in spawner.user.groups if not g.name.startswith(GROUP_PREFIX)]
        roles = self.store.roles_of(user, groups)
        if spawner.isolated:
            await ensure_account(spawner.account, Path(spawner.home_root or "/home"))
        else:
            spawner.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        storage = storage_from_settings(self.storage_settings)
        await asyncio.to_thread(storage.apply_user, user, roles)
        if roles:
            spawner.log.info("%s: projects %s", spawner._log_name, ", ".join(f"{s} ({r})" for s, r in sorted(roles.items())))
