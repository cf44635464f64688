"""Which servers are shared with which project, and which members each was shared with.

The hub holds the shares themselves; these rows remember the ones a project made, so a
member who leaves loses exactly those (see models.SharedServerRow for why per member).
"""

from __future__ import annotations

import builtins

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from gpulab.hub_config.services.errors import NotFound

from .models import ProjectRow, SharedServerRow, ShareGrantRow


@dataclass(frozen=True)
class SharedServer:
    owner: str
    server: str  # "" for the default server
    url: str
    shared_at: datetime
    users: tuple[str, ...]  # the members it is shared with


def _shared(row: SharedServerRow) -> SharedServer:
    return SharedServer(row.owner, row.server, row.url, row.shared_at, tuple(g.user for g in row.grants))


class SharedServerStore:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], datetime]):
        self.sessions = sessions
        self.clock = clock

    def list(self, slug: str) -> list[SharedServer]:
        with self.sessions() as session:
            return [_shared(row) for row in self._rows(session, slug)]

    def record(self, slug: str, owner: str, server: str, url: str, users: builtins.list[str]) -> SharedServer:
        """Remember that `owner`'s `server` is shared with `users` through project `slug` (adds to earlier users)."""
        with self.sessions() as session, session.begin():
            row = self._row(session, slug, owner, server)
            if row is None:
                project_id = session.scalar(select(ProjectRow.id).where(ProjectRow.slug == slug))
                if project_id is None:
                    raise NotFound(f"no project named {slug!r}")
                row = SharedServerRow(project_id=project_id, owner=owner, server=server, url=url,
                                      shared_at=self.clock())
                session.add(row)
            known = {g.user for g in row.grants}
            row.grants += [ShareGrantRow(user=name) for name in sorted(set(users) - known)]
            session.flush()
            return _shared(row)

    def remove(self, slug: str, owner: str, server: str) -> SharedServer | None:
        with self.sessions() as session, session.begin():
            row = self._row(session, slug, owner, server)
            if row is None:
                return None
            shared = _shared(row)
            session.delete(row)
            return shared

    def drop_grants(self, slug: str, owner: str, server: str, users: set[str]) -> None:
        with self.sessions() as session, session.begin():
            row = self._row(session, slug, owner, server)
            if row is not None:
                row.grants = [g for g in row.grants if g.user not in users]

    def granted_elsewhere(self, owner: str, server: str, user: str, slug: str) -> bool:
        """Whether another project also shares this server with `user` (then its share stays)."""
        with self.sessions() as session:
            query = (select(ShareGrantRow.id).join(ShareGrantRow.shared_server).join(ProjectRow)
                     .where(SharedServerRow.owner == owner, SharedServerRow.server == server,
                            ShareGrantRow.user == user, ProjectRow.slug != slug))
            return session.scalar(query.limit(1)) is not None

    @staticmethod
    def _rows(session: Session, slug: str) -> builtins.list[SharedServerRow]:
        return list(session.scalars(
            select(SharedServerRow).join(ProjectRow).where(ProjectRow.slug == slug)
            .options(selectinload(SharedServerRow.grants)).order_by(SharedServerRow.owner, SharedServerRow.server)))

    @staticmethod
    def _row(session: Session, slug: str, owner: str, server: str) -> SharedServerRow | None:
        return session.scalars(
            select(SharedServerRow).join(ProjectRow)
            .where(ProjectRow.slug == slug, SharedServerRow.owner == owner, SharedServerRow.server == server)
            .options(selectinload(SharedServerRow.grants))).one_or_none()
