"""Scheduler: jobs (a script or a command in a snapshot) as a kind of run.

Revision ID: scheduler0003
Revises: scheduler0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "scheduler0003"
down_revision = "scheduler0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduler_schedules") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="notebook"))
        batch.add_column(sa.Column("command", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("nodes", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("scheduler_runs") as batch:
        batch.add_column(sa.Column("exit_code", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("artifacts", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("scheduler_runs") as batch:
        batch.drop_column("artifacts")
        batch.drop_column("exit_code")
    with op.batch_alter_table("scheduler_schedules") as batch:
        batch.drop_column("nodes")
        batch.drop_column("command")
        batch.drop_column("kind")
