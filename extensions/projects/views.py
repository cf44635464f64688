"""The JSON shapes of the projects API (described in openapi.yaml); pages render the same data."""

from __future__ import annotations

from datetime import datetime, timezone

from .membership import ROLES, project_group
from .shared_servers import SharedServer
from .store import AuditEntry, Member, Project


def iso(moment: datetime) -> str:
    """UTC, ISO 8601, "Z"; SQLite hands back naive datetimes, which are UTC here."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def member_json(member: Member) -> dict:
    return {"kind": member.kind, "name": member.name, "role": member.role, "added_by": member.added_by,
            "added_at": iso(member.added_at)}


def project_json(project: Project, your_role: str | None, detail: bool = False) -> dict:
    out: dict[str, object] = {
        "name": project.slug,
        "description": project.description,
        "created_by": project.created_by,
        "created_at": iso(project.created_at),
        "updated_at": iso(project.updated_at),
        "your_role": your_role,
        "member_count": len(project.members),
    }
    if detail:
        out["members"] = [member_json(m) for m in project.members]
        out["hub_groups"] = {role: project_group(project.slug, role) for role in ROLES}
        out["folder"] = f"~/projects/{project.slug}"
    return out


def audit_json(entry: AuditEntry) -> dict:
    return {"at": iso(entry.at), "actor": entry.actor, "action": entry.action, "subject_kind": entry.subject_kind,
            "subject": entry.subject, "role": entry.role, "previous_role": entry.previous_role}


def shared_json(server: SharedServer) -> dict:
    return {"owner": server.owner, "server": server.server, "url": server.url, "shared_at": iso(server.shared_at),
            "members": list(server.users)}
