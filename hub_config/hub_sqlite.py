"""The hub's own SQLite database (JupyterHub's, `hub.db_url` unset): WAL and synchronous=NORMAL.

JupyterHub commits to its database from its event loop, several times per spawn, stop, token
check and activity report, and SQLite's default (a rollback journal, synchronous=FULL) waits for
the disk at every commit. Measured with 20 users spawning at once on the 2-core development
machine (ext4 on a virtual disk): the hub's event loop spent ~5.7 s of a 23 s run waiting in
those commits, and every other spawn waited behind it. In WAL mode with synchronous=NORMAL a
commit appends to the write-ahead log without waiting for the disk (checkpoints do); the
database stays consistent after a crash of the machine, which may take back the last commits,
not corrupt them. gpulab's own databases are in WAL mode already (gpulab.db.core).
"""

from __future__ import annotations

import os

from sqlalchemy import event
from sqlalchemy.engine import Engine

PREFIX = "sqlite:///"
_paths: set[str] = set()


def tune(db_url: str) -> None:
    """Every SQLite connection this process opens to the file `db_url` names gets WAL and
    synchronous=NORMAL (nothing for another database, or an in-memory one)."""
    if not db_url.startswith(PREFIX) or len(db_url) == len(PREFIX) or ":memory:" in db_url:
        return
    _paths.add(os.path.realpath(db_url[len(PREFIX):].split("?", 1)[0]))
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)


def _on_connect(dbapi_connection, _record) -> None:
    if not type(dbapi_connection).__module__.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    try:
        files = {row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"}
        if any(file and os.path.realpath(file) in _paths for file in files):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
