"""Alembic revisions of the projects feature (branch "projects")."""
