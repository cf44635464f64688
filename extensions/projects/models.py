"""Projects in gpulab's database: the project, its members with roles, and the audit log.

The database is the source of truth for membership; the hub's project groups, the
system groups and the folders' ACLs are derived from it (see sync.py and storage/).
The audit log has no foreign key to the project, so it outlives a deleted project.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gpulab.db import Base

MEMBER_KINDS = ("user", "group")


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    members: Mapped[list[MemberRow]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(MemberRow.kind, MemberRow.name)")


class MemberRow(Base):
    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "kind", "name", name="uq_project_members_entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "user" or "group" (a hub group)
    name: Mapped[str] = mapped_column(String(255), index=True)
    role: Mapped[str] = mapped_column(String(16))
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    project: Mapped[ProjectRow] = relationship(back_populates="members")


class AuditRow(Base):
    __tablename__ = "project_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(40), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))  # create, add-member, set-role, remove-member, ...
    subject_kind: Mapped[str] = mapped_column(String(8), default="")
    subject: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16), default="")
    previous_role: Mapped[str] = mapped_column(String(16), default="")


class SharedServerRow(Base):
    """A member's server shared with the project, and the members it was shared with.

    JupyterHub 6.1 ignores shares granted to a group when it checks a token (scopes.py
    reads `shared_with_me`, not `all_shared_with_me`), so a server is shared with each
    member as a user; these rows say which user shares the project made, so they can be
    revoked when a member leaves, without touching shares the owner made by hand.
    """

    __tablename__ = "project_shared_servers"
    __table_args__ = (UniqueConstraint("project_id", "owner", "server", name="uq_project_shared_servers_entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(255))
    server: Mapped[str] = mapped_column(String(255))  # "" for the default server
    url: Mapped[str] = mapped_column(String(1024))
    shared_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    grants: Mapped[list[ShareGrantRow]] = relationship(
        back_populates="shared_server", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ShareGrantRow.user")


class ShareGrantRow(Base):
    __tablename__ = "project_share_grants"
    __table_args__ = (UniqueConstraint("shared_server_id", "user", name="uq_project_share_grants_entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shared_server_id: Mapped[int] = mapped_column(ForeignKey("project_shared_servers.id", ondelete="CASCADE"),
                                                  index=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    shared_server: Mapped[SharedServerRow] = relationship(back_populates="grants")
