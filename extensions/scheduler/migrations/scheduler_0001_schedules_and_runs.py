"""Scheduled notebook runs: schedules and runs.

Revision ID: scheduler0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "scheduler0001"
down_revision = None
branch_labels = ("scheduler",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_schedules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("notebook_name", sa.String(255), nullable=False),
        sa.Column("notebook", sa.Text(), nullable=False),
        sa.Column("input_path", sa.String(1024), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("cron", sa.String(120), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("min_retry_interval_millis", sa.Integer(), nullable=False),
        sa.Column("retry_on_timeout", sa.Boolean(), nullable=False),
        sa.Column("notify", sa.JSON(), nullable=False),
        sa.Column("output_formats", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_slot", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_schedules")),
    )
    op.create_index(op.f("ix_scheduler_schedules_owner"), "scheduler_schedules", ["owner"])
    op.create_index(op.f("ix_scheduler_schedules_project"), "scheduler_schedules", ["project"])
    op.create_table(
        "scheduler_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("schedule_id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kernel_ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("cells_done", sa.Integer(), nullable=False),
        sa.Column("cells_total", sa.Integer(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("claim_id", sa.String(32), nullable=False),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("executor_ref", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("idempotency_token", sa.String(255), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["scheduler_schedules.id"], ondelete="CASCADE",
                                name=op.f("fk_scheduler_runs_schedule_id_scheduler_schedules")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_runs")),
        sa.UniqueConstraint("schedule_id", "slot", "attempt", name="uq_scheduler_runs_slot"),
    )
    op.create_index(op.f("ix_scheduler_runs_schedule_id"), "scheduler_runs", ["schedule_id"])
    op.create_index(op.f("ix_scheduler_runs_owner"), "scheduler_runs", ["owner"])
    op.create_index(op.f("ix_scheduler_runs_status"), "scheduler_runs", ["status"])
    op.create_index(op.f("ix_scheduler_runs_idempotency_token"), "scheduler_runs", ["idempotency_token"])


def downgrade() -> None:
    op.drop_table("scheduler_runs")
    op.drop_table("scheduler_schedules")
