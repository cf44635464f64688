"""gpulab's own database: projects, schedules, runs, SSH keys, GPU allocations.

One SQLAlchemy metadata (`Base`) shared by every feature's models, SQLite by default and
PostgreSQL on Kubernetes, migrated by Alembic (see migrate.py).
"""

from .core import Base, database_url, make_engine, make_session_factory

__all__ = ["Base", "database_url", "make_engine", "make_session_factory"]
