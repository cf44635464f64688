"""The hub's SQLite database in WAL mode with synchronous=NORMAL; other databases untouched."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from gpulab.hub_config import hub_sqlite


def pragmas(url: str) -> tuple[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return (connection.execute(text("PRAGMA journal_mode")).scalar(),
                    connection.execute(text("PRAGMA synchronous")).scalar())
    finally:
        engine.dispose()


def test_the_hubs_database_commits_without_waiting_for_the_disk(tmp_path):
    hub_url, other_url = f"sqlite:///{tmp_path}/jupyterhub.sqlite", f"sqlite:///{tmp_path}/other.sqlite"
    hub_sqlite.tune(hub_url)
    hub_sqlite.tune(hub_url)  # once is enough; twice changes nothing
    assert pragmas(hub_url) == ("wal", 1)  # 1: NORMAL
    assert pragmas(other_url) == ("delete", 2)  # SQLite's defaults: a rollback journal, FULL


def test_other_databases_are_left_alone():
    hub_sqlite.tune("postgresql://hub@db/jupyterhub")
    hub_sqlite.tune("sqlite:///:memory:")
    hub_sqlite.tune("sqlite://")
    assert pragmas("sqlite://")[1] == 2
