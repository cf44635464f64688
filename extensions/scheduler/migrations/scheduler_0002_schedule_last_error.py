"""Scheduler: a schedule shows the last error the dispatcher met on it.

Revision ID: scheduler0002
Revises: scheduler0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "scheduler0002"
down_revision = "scheduler0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduler_schedules") as batch:
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("scheduler_schedules") as batch:
        batch.drop_column("last_error")
