"""Where the projects service keeps its rows, and the upgrade that moves an earlier version's there.

The service runs as its own account when the hub is root (config.py), and an account that can
open gpulab's database can read and change every schedule and GPU claim in it. So with the
default SQLite storage its four tables live in a file of its own,
`<data_dir>/projects-service/projects.sqlite`, in the folder its account owns. The hub's
spawn and sign-in hooks (root) read that file too. With `database.url` set (PostgreSQL,
always on Kubernetes, where the hub is not root), the tables stay in that database.

Rows an earlier version stored in gpulab's database are moved over once, by the upgrade
`gpulab up` runs as root before the hub starts, so no project, member, share or audit entry
is lost. The move copies, in one transaction, every project whose name is not in the new
file yet (with its members and shared servers) and the audit entries not there yet, then
deletes the originals: an interrupted move is finished by the next one, never doubled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from gpulab.db import make_session_factory
from gpulab.db.own_database import own_database_url, upgrade_own_database

from .models import AuditRow, MemberRow, ProjectRow, SharedServerRow, ShareGrantRow

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from gpulab.hub_config.typed_settings import Settings

MIGRATIONS = ["gpulab.extensions.projects.migrations"]
FOLDER = "projects-service"
FILE_NAME = "projects.sqlite"


def projects_folder(s: Settings) -> Path:
    """The service's own folder: its (SQLite) database."""
    return Path(s.hub.data_dir, FOLDER)


def projects_database_url(s: Settings) -> str:
    """Where the projects rows live (pure): database.url if set, else the service's own SQLite file."""
    return own_database_url(s, projects_folder(s), FILE_NAME)


def upgrade_projects_storage(s: Settings) -> int:
    """Migrate the service's own database and move the rows an earlier version kept in gpulab's
    there; returns how many projects moved. Runs where gpulab's database is migrated (as root,
    before the hub starts and hands the folder to the service's account)."""
    return upgrade_own_database(s, projects_folder(s), FILE_NAME, MIGRATIONS, carry_over)


def carry_over(source: Engine, target: Engine) -> int:
    """Move the projects rows from `source` (gpulab's database, migrated) to `target`; returns
    the number of projects copied. A project whose name is in `target` already is not copied
    again (nor its members and shares); an audit entry is matched on all its fields."""
    sources, targets = make_session_factory(source), make_session_factory(target)
    with sources() as old:
        projects = list(old.scalars(select(ProjectRow)))
        members = list(old.scalars(select(MemberRow)))
        servers = list(old.scalars(select(SharedServerRow)))
        grants = list(old.scalars(select(ShareGrantRow)))
        audit = list(old.scalars(select(AuditRow)))
        old.expunge_all()
    if not (projects or audit):
        return 0
    with targets() as new:
        have = set(new.scalars(select(ProjectRow.slug)))
        have_audit = {_audit_key(row) for row in new.scalars(select(AuditRow))}
        copied = [row for row in projects if row.slug not in have]
        ids = {row.id: _add(new, row, ProjectRow) for row in copied}  # old id -> id in `target`
        for row in members:
            if row.project_id in ids:
                _add(new, row, MemberRow, project_id=ids[row.project_id])
        server_ids = {row.id: _add(new, row, SharedServerRow, project_id=ids[row.project_id])
                      for row in servers if row.project_id in ids}
        for row in grants:
            if row.shared_server_id in server_ids:
                _add(new, row, ShareGrantRow, shared_server_id=server_ids[row.shared_server_id])
        for row in audit:
            if _audit_key(row) not in have_audit:
                _add(new, row, AuditRow)
        new.commit()
    with sources() as old:  # only once the copy is committed; members, shares and grants cascade
        old.execute(delete(ShareGrantRow).where(ShareGrantRow.id.in_([row.id for row in grants])))
        old.execute(delete(SharedServerRow).where(SharedServerRow.id.in_([row.id for row in servers])))
        old.execute(delete(MemberRow).where(MemberRow.id.in_([row.id for row in members])))
        old.execute(delete(ProjectRow).where(ProjectRow.id.in_([row.id for row in projects])))
        old.execute(delete(AuditRow).where(AuditRow.id.in_([row.id for row in audit])))
        old.commit()
    return len(copied)


def _audit_key(row: AuditRow) -> tuple:
    return tuple(_plain(getattr(row, column.key)) for column in AuditRow.__table__.columns if column.key != "id")


def _plain(value):
    # SQLite gives back naive datetimes; compare what was stored, not how it was read
    return value.replace(tzinfo=None) if hasattr(value, "tzinfo") and value.tzinfo else value


def _add(session, row, model, **changes) -> int:
    """A copy of `row` in `session` with `changes`, under its old id unless that is taken there; its id."""
    fields = {column.key: getattr(row, column.key) for column in model.__table__.columns}
    if session.get(model, row.id) is not None:
        del fields["id"]
    copy = model(**{**fields, **changes})
    session.add(copy)
    session.flush()
    return copy.id
