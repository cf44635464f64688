"""A service's own database: where a service that runs as its own account keeps its rows.

An account that can open gpulab's database can read and change every project, schedule and
GPU claim in it, so with the default SQLite storage such a service keeps its tables in a file
of its own, in the folder its account owns. With `database.url` set (PostgreSQL, always on
Kubernetes, where the hub is not root) the tables stay in that database: the URL decides.

Rows an earlier version kept in gpulab's database are moved once, by the upgrade `gpulab up`
and `gpulab db upgrade` run as root before the hub starts; each service says how its rows
move (copy what is missing, then delete the originals, so an interrupted move is finished by
the next one, never doubled).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sqlalchemy.engine import Engine

from .core import database_url, make_engine
from .migrate import upgrade

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from gpulab.hub_config.typed_settings import Settings


def own_database_url(s: Settings, folder: Path, file_name: str) -> str:
    """database.url if set, else the service's SQLite file in its folder (pure)."""
    if s.database.url:
        return s.database.url
    return f"sqlite:///{folder / file_name}"


def upgrade_own_database(s: Settings, folder: Path, file_name: str, migrations: list[str],
                         carry_over: Callable[[Engine, Engine], int]) -> int:
    """Migrate the service's own database and move its rows from gpulab's into it with
    `carry_over(gpulab's engine, its engine)`; returns what that returns (0 when the service
    shares gpulab's database)."""
    url = own_database_url(s, folder, file_name)
    if url == database_url(s):
        return 0
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = make_engine(url)
    upgrade(url, migrations, engine=target)
    main = make_engine(database_url(s))
    moved = carry_over(main, target)
    main.dispose()
    target.dispose()  # closes SQLite's -wal and -shm before they are handed over
    give_to_folder_owner(folder, [file_name, f"{file_name}-wal", f"{file_name}-shm"])
    return moved


def give_to_folder_owner(folder: Path, names: list[str]) -> None:
    """Files root wrote in a service's folder belong to the folder's owner, the service's account
    (the first hand-over gives it the whole folder, so at a first upgrade this changes nothing)."""
    owner = os.stat(folder)
    for name in names:
        path = folder / name
        if path.exists() and not path.is_symlink():
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
