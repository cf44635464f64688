"""Alembic migrations, one branch per feature.

Each feature keeps its revisions beside its code (e.g. `gpulab.compute.migrations`) with
`branch_labels = ("<feature>",)` and its own base, and adds its package below. Start-up
upgrades every branch to its head, so features add tables without touching each other.
"""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from .core import make_engine

# Packages holding revision files, one per feature.
VERSION_PACKAGES: list[str] = [
    "gpulab.db.migrations.versions",
    "gpulab.compute.migrations",
    "gpulab.extensions.scheduler.migrations",
    "gpulab.extensions.ssh.migrations",
    "gpulab.extensions.projects.migrations",
]


def alembic_config(url: str, version_packages: list[str] | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("gpulab.db") / "migrations"))
    locations = [str(resources.files(p)) for p in (version_packages or VERSION_PACKAGES)]
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option("version_locations", "\n".join(locations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, version_packages: list[str] | None = None, engine: Engine | None = None) -> None:
    """Bring the database at `url` to the head of every feature's branch."""
    cfg = alembic_config(url, version_packages)
    engine = engine or make_engine(url)
    with engine.connect() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "heads")
        connection.commit()
