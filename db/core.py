"""Engine and session set-up for gpulab's database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from gpulab.hub_config.typed_settings import Settings


# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 15_000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The SQLite file's own folder: SQLite writes its -wal and -shm files beside the database, so
# the account of the service that keeps it (the scheduler's, when the hub is root) owns this
# folder, not the data directory with the hub's secrets.
DATABASE_FOLDER = "state"
DATABASE_FILE = "gpulab.sqlite"


def database_folder(s: Settings) -> Path:
    return Path(s.hub.data_dir, DATABASE_FOLDER)


def database_url(s: Settings) -> str:
    """The URL from settings: database.url, or a SQLite file in the data directory's state folder."""
    return s.database.url or f"sqlite:///{database_folder(s) / DATABASE_FILE}"


def move_database_into_its_folder(s: Settings) -> bool:
    """Where an earlier gpulab kept its SQLite file in the data directory itself, move it (and
    its -wal and -shm) into the state folder, once; True if it moved. Root, before the hub starts."""
    if s.database.url:
        return False
    old = Path(s.hub.data_dir, DATABASE_FILE)
    new = database_folder(s) / DATABASE_FILE
    if not old.is_file() or old.is_symlink() or new.exists():
        return False
    new.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm", "-journal", ""):  # the database last: it marks the move as done
        part = Path(f"{old}{suffix}")
        if part.is_file() and not part.is_symlink():
            os.rename(part, f"{new}{suffix}")
    return True


def make_engine(url: str) -> Engine:
    """An engine; for SQLite, one that several processes can share safely.

    SQLite transactions begin IMMEDIATE: a transaction that reads and then writes (a GPU
    claim, a run lease) takes the write lock up front and waits for it, instead of failing
    with "database is locked" when two processes race.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)
