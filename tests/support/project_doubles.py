"""Stand-ins for the hub and the synchronizer, so the projects core can be tested without a hub.

`FakeDirectory` answers like the hub's REST API from in-memory users and groups;
`RecordingSync` records what the core asked to bring in step.
"""

from __future__ import annotations

from gpulab.extensions.projects.core import HubRefused, HubUser
from gpulab.extensions.projects.sync import effective_members


class FakeDirectory:
    def __init__(self, users: dict[str, dict], groups: dict[str, list[str]] | None = None):
        self.users = users  # name -> {"admin": bool, "groups": [...]}
        self.groups = groups or {}
        self.servers: set[tuple[str, str]] = {(name, "") for name in users}
        self.shares: set[tuple[str, str, str]] = set()  # (owner, server, user)

    async def user(self, name: str) -> HubUser | None:
        if name not in self.users:
            return None
        info = self.users[name]
        groups = info.get("groups", []) + [g for g, members in self.groups.items() if name in members]
        return HubUser(name, info.get("admin", False), tuple(groups))

    async def group_exists(self, name: str) -> bool:
        return name in self.groups

    async def group_members(self, name: str) -> set[str]:
        return set(self.groups.get(name, ()))

    async def check_server(self, owner: str, server: str, token: str) -> None:
        if (owner, server) not in self.servers:
            raise HubRefused(404, f"No such server: {owner}/{server}")
        if token != f"token-of-{owner}":
            raise HubRefused(403, "Action is not authorized with current scopes")

    async def share_with_user(self, owner: str, server: str, user: str, token: str) -> None:
        await self.check_server(owner, server, token)
        self.shares.add((owner, server, user))

    async def revoke_user_share(self, user: str, owner: str, server: str) -> None:
        self.shares.discard((owner, server, user))


class RecordingSync:
    def __init__(self, directory: FakeDirectory):
        self.directory = directory
        self.synced: list[str] = []
        self.deleted_slugs: list[str] = []
        self.taken: set[str] = set()  # slugs whose folder "exists already"

    def check_available(self, slug: str) -> None:
        from gpulab.hub_config.services.errors import Conflict

        if slug in self.taken:
            raise Conflict(f"a folder for {slug!r} already exists")

    async def members(self, project) -> dict[str, str]:
        group_users = {m.name: await self.directory.group_members(m.name) for m in project.members
                       if m.kind == "group"}
        return effective_members(project, group_users)

    async def project(self, slug: str) -> None:
        self.synced.append(slug)

    async def deleted(self, project, shared) -> None:
        self.deleted_slugs.append(project.slug)

    async def unshare(self, slug, shared, users) -> None:
        for user in users:
            await self.directory.revoke_user_share(user, shared.owner, shared.server)
