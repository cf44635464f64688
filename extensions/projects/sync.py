"""Keep the hub's project groups and the shared folders in step with the database.

The database says who is a member (users, and hub groups whose users are members); the
hub gets one group per project and role (`project:vision:editor`, see membership.py),
each user in the group of their highest role only; the storage backend gets the same
user -> role map. Every change runs `project(slug)`; the service also runs `everything()`
at start and every `projects.reconcile_interval` seconds, which repairs whatever drifted
(a hub restarted from an old database, an identity provider's sign-in, a user created
later, a group whose members changed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from .core import HubRefused
from .hub_api import HubApi
from .membership import ROLES, parse_project_group, project_group
from .shared_servers import SharedServer, SharedServerStore
from .store import Project, ProjectStore

log = logging.getLogger("gpulab.projects")


class Storage(Protocol):
    """Where project folders live (storage.local.LocalStorage, or NoStorage on Kubernetes)."""

    def check_available(self, slug: str) -> None: ...
    def apply_project(self, slug: str, members: dict[str, str]) -> None: ...
    def remove_project(self, slug: str, members: list[str]) -> None: ...


class NoStorage:
    """No folders to provision from the service (Kubernetes: the pod mounts sub-paths of a volume)."""

    def check_available(self, slug: str) -> None:
        return None

    def apply_project(self, slug: str, members: dict[str, str]) -> None:
        return None

    def remove_project(self, slug: str, members: list[str]) -> None:
        return None


def effective_members(project: Project, group_users: dict[str, set[str]]) -> dict[str, str]:
    """Each user's highest role in the project, direct or through a hub group (pure)."""
    members: dict[str, str] = {}
    for member in project.members:
        users = [member.name] if member.kind == "user" else sorted(group_users.get(member.name, ()))
        for user in users:
            if user not in members or ROLES.index(member.role) > ROLES.index(members[user]):
                members[user] = member.role
    return members


def desired_groups(slug: str, members: dict[str, str]) -> dict[str, set[str]]:
    """The project's hub groups and who belongs in each (pure)."""
    groups: dict[str, set[str]] = {project_group(slug, role): set() for role in ROLES}
    for user, role in members.items():
        groups[project_group(slug, role)].add(user)
    return groups


class Sync:
    def __init__(self, store: ProjectStore, shares: SharedServerStore, hub: HubApi, storage: Storage):
        self.store = store
        self.shares = shares
        self.hub = hub
        self.storage = storage
        self._lock = asyncio.Lock()  # one change at a time, so a slow one never overwrites a newer one

    def check_available(self, slug: str) -> None:
        self.storage.check_available(slug)

    async def members(self, project: Project) -> dict[str, str]:
        group_users = {m.name: await self.hub.group_members(m.name) for m in project.members if m.kind == "group"}
        return effective_members(project, group_users)

    async def project(self, slug: str) -> None:
        async with self._lock:
            project = self.store.get(slug)
            if project is None:
                return
            members = await self.members(project)
            for group, users in desired_groups(slug, members).items():
                await self._set_group(group, users)
            await asyncio.to_thread(self.storage.apply_project, slug, members)
            await self._prune_shares(slug, members)

    async def deleted(self, project: Project, shared: list[SharedServer]) -> None:
        async with self._lock:
            members = await self.members(project)
            for role in ROLES:
                await self.hub.delete_group(project_group(project.slug, role))
            await asyncio.to_thread(self.storage.remove_project, project.slug, sorted(members))
            for server in shared:
                await self._revoke(project.slug, server, set(server.users))

    async def unshare(self, slug: str, shared: SharedServer, users: set[str]) -> None:
        async with self._lock:
            await self._revoke(slug, shared, users)

    async def _prune_shares(self, slug: str, members: dict[str, str]) -> None:
        """Members who left lose the servers shared with the project; so does everyone, if the owner left."""
        for shared in self.shares.list(slug):
            if shared.owner not in members:
                await self._revoke(slug, shared, set(shared.users))
                self.shares.remove(slug, shared.owner, shared.server)
                log.info("%s: %s left, so their server %r is no longer shared", slug, shared.owner, shared.server)
                continue
            gone = set(shared.users) - set(members)
            if gone:
                await self._revoke(slug, shared, gone)
                self.shares.drop_grants(slug, shared.owner, shared.server, gone)

    async def _revoke(self, slug: str, shared: SharedServer, users: set[str]) -> None:
        for user in sorted(users):
            if not self.shares.granted_elsewhere(shared.owner, shared.server, user, slug):
                await self.hub.revoke_user_share(user, shared.owner, shared.server)

    async def everything(self) -> None:
        """Reconcile every project, and drop hub groups of projects that no longer exist."""
        projects = {p.slug for p in self.store.list()}
        for slug in sorted(projects):
            try:
                await self.project(slug)
            except Exception:  # one broken project must not stop the others
                log.exception("could not bring project %s in step", slug)
        async with self._lock:
            for group in await self.hub.group_names():
                parsed = parse_project_group(group)
                if parsed and parsed[0] not in projects:
                    log.info("removing hub group %s: its project no longer exists", group)
                    await self.hub.delete_group(group)

    async def _set_group(self, group: str, users: set[str]) -> None:
        current = await self.hub.group(group)
        if current is None:
            await self.hub.create_group(group)
            current_users: set[str] = set()
        else:
            current_users = set(current["users"])
        extra = sorted(current_users - users)
        missing = sorted(users - current_users)
        if extra:
            await self.hub.remove_from_group(group, extra)
        if missing:
            try:
                await self.hub.add_to_group(group, missing)
            except HubRefused as refused:
                if refused.status != 400:
                    raise
                # Someone in the list is not a hub user (any more): add the others one by one.
                for user in missing:
                    try:
                        await self.hub.add_to_group(group, [user])
                    except HubRefused:
                        log.warning("not adding %s to %s: not a hub user", user, group)
