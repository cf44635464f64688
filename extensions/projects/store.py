"""Reading and writing projects in gpulab's database; every method is one transaction.

Methods return frozen dataclasses, never ORM rows, so nothing outside this module holds a
session. Rules that must see the current state and change it atomically (a project keeps
a maintainer) are passed in as `guard` callables, run inside the write transaction
(BEGIN IMMEDIATE on SQLite, so two writers never both pass a guard on stale state).
"""

from __future__ import annotations

import builtins

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from gpulab.hub_config.services.errors import Conflict, NotFound

from .membership import ROLES
from .models import AuditRow, MemberRow, ProjectRow


@dataclass(frozen=True)
class Member:
    kind: str  # "user" or "group"
    name: str
    role: str
    added_by: str
    added_at: datetime


@dataclass(frozen=True)
class Project:
    slug: str
    description: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    members: tuple[Member, ...]

    def member(self, kind: str, name: str) -> Member | None:
        return next((m for m in self.members if m.kind == kind and m.name == name), None)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    subject_kind: str
    subject: str
    role: str
    previous_role: str


Guard = Callable[[Project], object]  # raises to refuse; what it returns is not used


def _project(row: ProjectRow) -> Project:
    members = tuple(Member(m.kind, m.name, m.role, m.added_by, m.added_at) for m in row.members)
    return Project(row.slug, row.description, row.created_by, row.created_at, row.updated_at, members)


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(row.at, row.actor, row.action, row.subject_kind, row.subject, row.role, row.previous_role)


def roles_from_entries(entries: Iterable[tuple[str, str, str, str]], user: str,
                       groups: Iterable[str]) -> dict[str, str]:
    """Each project's highest role for `user`, from (slug, kind, name, role) entries (pure)."""
    groups = set(groups)
    roles: dict[str, str] = {}
    for slug, kind, name, role in entries:
        if (kind == "user" and name == user) or (kind == "group" and name in groups):
            if slug not in roles or ROLES.index(role) > ROLES.index(roles[slug]):
                roles[slug] = role
    return roles


class ProjectStore:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], datetime]):
        self.sessions = sessions
        self.clock = clock

    # ------------------------------------------------------------ reading

    def list(self) -> list[Project]:
        with self.sessions() as session:
            rows = session.scalars(select(ProjectRow).options(selectinload(ProjectRow.members))
                                   .order_by(ProjectRow.slug))
            return [_project(row) for row in rows]

    def get(self, slug: str) -> Project | None:
        with self.sessions() as session:
            row = self._row(session, slug)
            return _project(row) if row else None

    def _written(self, slug: str) -> Project:
        """The project as a write just left it (NotFound if a delete came in between)."""
        project = self.get(slug)
        if project is None:
            raise NotFound(f"project {slug!r} was deleted meanwhile")
        return project

    def audit(self, slug: str, limit: int = 200) -> builtins.list[AuditEntry]:
        with self.sessions() as session:
            rows = session.scalars(select(AuditRow).where(AuditRow.project == slug)
                                   .order_by(AuditRow.id.desc()).limit(limit))
            return [_entry(row) for row in rows]

    def roles_of(self, user: str, groups: Iterable[str]) -> dict[str, str]:
        """The projects `user` belongs to (directly or through one of `groups`), with their role."""
        groups = list(groups)
        with self.sessions() as session:
            query = (select(ProjectRow.slug, MemberRow.kind, MemberRow.name, MemberRow.role)
                     .join(MemberRow.project)
                     .where(((MemberRow.kind == "user") & (MemberRow.name == user))
                            | ((MemberRow.kind == "group") & MemberRow.name.in_(groups))))
            return roles_from_entries(session.execute(query).all(), user, groups)

    # ------------------------------------------------------------ writing

    def create(self, slug: str, description: str, actor: str) -> Project:
        now = self.clock()
        try:
            with self.sessions() as session, session.begin():
                if self._row(session, slug) is not None:
                    raise Conflict(f"a project named {slug!r} already exists")
                row = ProjectRow(slug=slug, description=description, created_by=actor, created_at=now,
                                 updated_at=now)
                row.members = [MemberRow(kind="user", name=actor, role="maintainer", added_by=actor, added_at=now)]
                session.add(row)
                self._log(session, slug, actor, "create")
                self._log(session, slug, actor, "add-member", "user", actor, "maintainer")
        except IntegrityError:
            raise Conflict(f"a project named {slug!r} already exists") from None
        return self._written(slug)

    def update_description(self, slug: str, description: str, actor: str, guard: Guard) -> Project:
        with self.sessions() as session, session.begin():
            row = self._existing(session, slug)
            guard(_project(row))
            row.description = description
            row.updated_at = self.clock()
            self._log(session, slug, actor, "describe")
        return self._written(slug)

    def delete(self, slug: str, actor: str, guard: Guard) -> Project:
        with self.sessions() as session, session.begin():
            row = self._existing(session, slug)
            project = _project(row)
            guard(project)
            session.execute(delete(MemberRow).where(MemberRow.project_id == row.id))
            session.delete(row)
            self._log(session, slug, actor, "delete")
        return project

    def add_member(self, slug: str, kind: str, name: str, role: str, actor: str, guard: Guard) -> Project:
        with self.sessions() as session, session.begin():
            row = self._existing(session, slug)
            project = _project(row)
            guard(project)
            if project.member(kind, name):
                raise Conflict(f"{kind} {name!r} is already a member of {slug}; change their role instead")
            now = self.clock()
            row.members.append(MemberRow(kind=kind, name=name, role=role, added_by=actor, added_at=now))
            row.updated_at = now
            self._log(session, slug, actor, "add-member", kind, name, role)
        return self._written(slug)

    def set_role(self, slug: str, kind: str, name: str, role: str, actor: str, guard: Guard) -> Project:
        with self.sessions() as session, session.begin():
            row = self._existing(session, slug)
            guard(_project(row))
            member = self._member(row, kind, name)
            previous = member.role
            if previous != role:
                member.role = role
                row.updated_at = self.clock()
                self._log(session, slug, actor, "set-role", kind, name, role, previous)
        return self._written(slug)

    def remove_member(self, slug: str, kind: str, name: str, actor: str, guard: Guard) -> Project:
        with self.sessions() as session, session.begin():
            row = self._existing(session, slug)
            guard(_project(row))
            member = self._member(row, kind, name)
            row.members.remove(member)
            row.updated_at = self.clock()
            self._log(session, slug, actor, "remove-member", kind, name, "", member.role)
        return self._written(slug)

    def record(self, slug: str, actor: str, action: str, subject_kind: str = "", subject: str = "") -> None:
        """An audit entry for something that is not a membership change (sharing a server)."""
        with self.sessions() as session, session.begin():
            self._log(session, slug, actor, action, subject_kind, subject)

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _row(session: Session, slug: str) -> ProjectRow | None:
        return session.scalars(select(ProjectRow).where(ProjectRow.slug == slug)
                               .options(selectinload(ProjectRow.members))).one_or_none()

    def _existing(self, session: Session, slug: str) -> ProjectRow:
        row = self._row(session, slug)
        if row is None:
            raise NotFound(f"no project named {slug!r}")
        return row

    @staticmethod
    def _member(row: ProjectRow, kind: str, name: str) -> MemberRow:
        for member in row.members:
            if member.kind == kind and member.name == name:
                return member
        raise NotFound(f"{kind} {name!r} is not a member of {row.slug}")

    def _log(self, session: Session, slug: str, actor: str, action: str, subject_kind: str = "",
             subject: str = "", role: str = "", previous_role: str = "") -> None:
        session.add(AuditRow(project=slug, at=self.clock(), actor=actor, action=action, subject_kind=subject_kind,
                             subject=subject, role=role, previous_role=previous_role))
