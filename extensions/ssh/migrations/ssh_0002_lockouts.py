"""SSH lockouts by source address, kept across restarts of the SSH service.

Revision ID: ssh0002
Revises: ssh0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "ssh0002"
down_revision = "ssh0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssh_lockouts",
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_ssh_lockouts")),
    )


def downgrade() -> None:
    op.drop_table("ssh_lockouts")
