"""Scheduler: a schedule's profile options (KubeSpawner's profile_options, as a server's).

Revision ID: scheduler0004
Revises: scheduler0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "scheduler0004"
down_revision = "scheduler0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduler_schedules") as batch:
        batch.add_column(sa.Column("profile_options", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("scheduler_schedules") as batch:
        batch.drop_column("profile_options")
