"""Usage ledger: intervals of holding GPUs and their utilisation.

Revision ID: spawner0002
Revises: spawner0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "spawner0002"
down_revision = "spawner0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpu_usage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("claim_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(255), nullable=False),
        sa.Column("profile", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("devices", sa.String(2000), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("utilization_sum", sa.Integer(), nullable=False),
        sa.Column("utilization_max", sa.Integer(), nullable=False),
        sa.Column("memory_max_mb", sa.Integer(), nullable=False),
        sa.Column("measured_gpu_seconds", sa.Float(), nullable=False),
        sa.Column("idle_gpu_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_usage")),
    )
    op.create_index(op.f("ix_gpu_usage_claim_id"), "gpu_usage", ["claim_id"])
    op.create_index(op.f("ix_gpu_usage_owner"), "gpu_usage", ["owner"])
    op.create_index(op.f("ix_gpu_usage_started_at"), "gpu_usage", ["started_at"])
    op.create_index(op.f("ix_gpu_usage_ended_at"), "gpu_usage", ["ended_at"])


def downgrade() -> None:
    op.drop_table("gpu_usage")
