"""Projects, their members with roles, the audit log, and servers shared with projects.

Revision ID: projects0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "projects0001"
down_revision = None
branch_labels = ("projects",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("slug", name=op.f("uq_projects_slug")),
    )
    op.create_table(
        "project_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_by", sa.String(255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE",
                                name=op.f("fk_project_members_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_members")),
        sa.UniqueConstraint("project_id", "kind", "name", name="uq_project_members_entry"),
    )
    op.create_index(op.f("ix_project_members_project_id"), "project_members", ["project_id"])
    op.create_index(op.f("ix_project_members_name"), "project_members", ["name"])
    op.create_table(
        "project_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject_kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("previous_role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_audit")),
    )
    op.create_index(op.f("ix_project_audit_project"), "project_audit", ["project"])
    op.create_table(
        "project_shared_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("url", sa.String(1024), nullable=False),
        sa.Column("shared_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE",
                                name=op.f("fk_project_shared_servers_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_shared_servers")),
        sa.UniqueConstraint("project_id", "owner", "server", name="uq_project_shared_servers_entry"),
    )
    op.create_index(op.f("ix_project_shared_servers_project_id"), "project_shared_servers", ["project_id"])
    op.create_table(
        "project_share_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shared_server_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(["shared_server_id"], ["project_shared_servers.id"], ondelete="CASCADE",
                                name=op.f("fk_project_share_grants_shared_server_id_project_shared_servers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_share_grants")),
        sa.UniqueConstraint("shared_server_id", "user", name="uq_project_share_grants_entry"),
    )
    op.create_index(op.f("ix_project_share_grants_shared_server_id"), "project_share_grants", ["shared_server_id"])
    op.create_index(op.f("ix_project_share_grants_user"), "project_share_grants", ["user"])


def downgrade() -> None:
    op.drop_table("project_share_grants")
    op.drop_table("project_shared_servers")
    op.drop_table("project_audit")
    op.drop_table("project_members")
    op.drop_table("projects")
