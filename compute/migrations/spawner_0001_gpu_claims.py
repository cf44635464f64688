"""GPU ledger: one row per claimed device.

Revision ID: spawner0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "spawner0001"
down_revision = None
branch_labels = ("spawner",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpu_claims",
        sa.Column("device_uuid", sa.String(96), nullable=False),
        sa.Column("claim_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(255), nullable=False),
        sa.Column("holder_pid", sa.Integer(), nullable=True),
        sa.Column("holder_start_ticks", sa.BigInteger(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_uuid", name=op.f("pk_gpu_claims")),
    )
    op.create_index(op.f("ix_gpu_claims_claim_id"), "gpu_claims", ["claim_id"])
    op.create_index(op.f("ix_gpu_claims_owner"), "gpu_claims", ["owner"])
    op.create_index(op.f("ix_gpu_claims_purpose"), "gpu_claims", ["purpose"])


def downgrade() -> None:
    op.drop_table("gpu_claims")
