"""The rules of projects: who may see, create, change and delete what. No HTTP here.

`Projects` is called by the API handlers, the pages and (through them) the CLI. It reads
and writes the database through `ProjectStore`, asks the hub who people are through a
`Directory`, and after every membership change hands the project to `Sync`, which puts
the hub's project groups and the shared folder in step with the database.

Roles: viewer (read), editor (read and write), maintainer (also manages members). Admins
may do everything. Non-members learn nothing about a project beyond its existence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from gpulab.hub_config.services.errors import Conflict, Invalid, NotAllowed, NotFound
from gpulab.hub_config.client import ClientError

from .membership import GROUP_PREFIX, ROLES
from .models import MEMBER_KINDS
from .names import check_name
from .shared_servers import SharedServer, SharedServerStore
from .store import AuditEntry, Project, ProjectStore, roles_from_entries

log = logging.getLogger("gpulab.projects")

MAX_DESCRIPTION = 2000


@dataclass(frozen=True)
class Actor:
    """Who is asking, as the hub knows them right now."""

    name: str
    admin: bool
    groups: frozenset[str]


@dataclass(frozen=True)
class HubUser:
    name: str
    admin: bool
    groups: tuple[str, ...]


# The hub answered a request with an error status (`status`, `message`): the one client's error.
HubRefused = ClientError


class Directory(Protocol):
    """The hub, as projects need it (hub_api.HubApi in the service)."""

    async def user(self, name: str) -> HubUser | None: ...
    async def group_exists(self, name: str) -> bool: ...
    async def check_server(self, owner: str, server: str, token: str) -> None: ...
    async def share_with_user(self, owner: str, server: str, user: str, token: str) -> None: ...
    async def revoke_user_share(self, user: str, owner: str, server: str) -> None: ...


class Synchronizer(Protocol):
    """Puts the hub's groups, shares and the storage in step with the database (sync.Sync)."""

    def check_available(self, slug: str) -> None: ...
    async def members(self, project: Project) -> dict[str, str]: ...
    async def project(self, slug: str) -> None: ...
    async def deleted(self, project: Project, shared: list[SharedServer]) -> None: ...
    async def unshare(self, slug: str, shared: SharedServer, users: set[str]) -> None: ...


def role_in(project: Project, actor: Actor) -> str | None:
    """The actor's highest role in the project, directly or through a hub group (pure)."""
    entries = [(project.slug, m.kind, m.name, m.role) for m in project.members]
    return roles_from_entries(entries, actor.name, actor.groups).get(project.slug)


def with_article(word: str) -> str:
    """"an editor", "a viewer" (the roles are plain English words)."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def at_least(role: str | None, needed: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid(f"role: {role!r} is not a role; expected one of {', '.join(ROLES)}")
    return role


def check_kind(kind: str) -> str:
    if kind not in MEMBER_KINDS:
        raise Invalid(f"kind: {kind!r} is not a member kind; expected user or group")
    return kind


def keeps_a_maintainer(project: Project, kind: str, name: str, new_role: str | None) -> None:
    """Refuse a change that would leave the project without a maintainer (pure)."""
    remaining = [m for m in project.members if m.role == "maintainer" and (m.kind, m.name) != (kind, name)]
    if not remaining and new_role != "maintainer":
        raise Conflict(f"{project.slug} would have no maintainer left; make someone else a maintainer first "
                       "(or delete the project)")


class Projects:
    def __init__(self, store: ProjectStore, shares: SharedServerStore, directory: Directory, sync: Synchronizer,
                 creators: list[str] | None = None, hub_base_url: str = "/"):
        self.store = store
        self.shares = shares
        self.directory = directory
        self.sync = sync
        self.creators = list(creators or [])  # hub groups that may create projects; [] = everyone
        self.hub_base_url = hub_base_url

    # ------------------------------------------------------------ who is asking

    async def actor(self, name: str) -> Actor:
        """The caller's current admin flag and groups, read from the hub (never from a cached token model)."""
        user = await self.directory.user(name)
        if user is None:
            raise NotAllowed(f"{name!r} is not a hub user")
        return Actor(user.name, user.admin, frozenset(user.groups))

    def _require(self, project: Project, actor: Actor, needed: str, doing: str) -> str | None:
        role = role_in(project, actor)
        if actor.admin or at_least(role, needed):
            return role
        if role is None:
            raise NotAllowed(f"you are not a member of {project.slug}")
        raise NotAllowed(f"only {needed}s{'' if needed == 'maintainer' else ' and above'} of {project.slug} may "
                         f"{doing}; you are {with_article(role)}")

    def _get(self, slug: str) -> Project:
        project = self.store.get(slug)
        if project is None:
            raise NotFound(f"no project named {slug!r}")
        return project

    # ------------------------------------------------------------ projects

    def visible(self, actor: Actor) -> list[tuple[Project, str | None]]:
        """Admins see every project; everyone else the projects they belong to, with their role."""
        listed = []
        for project in self.store.list():
            role = role_in(project, actor)
            if role is not None or actor.admin:
                listed.append((project, role))
        return listed

    def may_create(self, actor: Actor) -> bool:
        return actor.admin or not self.creators or bool(actor.groups & set(self.creators))

    async def create(self, actor: Actor, name: str, description: str = "") -> Project:
        name = check_name(name)
        self._check_description(description)
        if not self.may_create(actor):
            raise NotAllowed(f"only members of {', '.join(self.creators)} (and admins) may create projects")
        if self.store.get(name) is not None:
            raise Conflict(f"a project named {name!r} already exists")
        self.sync.check_available(name)
        project = self.store.create(name, description, actor.name)
        log.info("%s created project %s", actor.name, name)
        await self.sync.project(name)
        return project

    def show(self, actor: Actor, slug: str) -> tuple[Project, str | None]:
        project = self._get(slug)
        role = self._require(project, actor, "viewer", "see it")
        return project, role

    async def describe(self, actor: Actor, slug: str, description: str) -> Project:
        self._check_description(description)
        self._get(slug)
        return self.store.update_description(
            slug, description, actor.name, lambda p: self._require(p, actor, "maintainer", "change its description"))

    async def delete(self, actor: Actor, slug: str) -> Project:
        self._require(self._get(slug), actor, "maintainer", "delete it")
        shared = self.shares.list(slug)
        project = self.store.delete(slug, actor.name, lambda p: self._require(p, actor, "maintainer", "delete it"))
        log.info("%s deleted project %s", actor.name, slug)
        await self.sync.deleted(project, shared)
        return project

    def audit(self, actor: Actor, slug: str) -> list[AuditEntry]:
        self._require(self._get(slug), actor, "viewer", "see its history")
        return self.store.audit(slug)

    @staticmethod
    def _check_description(description: str) -> None:
        if len(description) > MAX_DESCRIPTION:
            raise Invalid(f"description: at most {MAX_DESCRIPTION} characters, got {len(description)}")

    # ------------------------------------------------------------ members

    async def add_member(self, actor: Actor, slug: str, kind: str, name: str, role: str) -> Project:
        check_kind(kind)
        check_role(role)
        self._require(self._get(slug), actor, "maintainer", "add members")
        await self._check_exists(kind, name)

        def guard(project: Project) -> None:
            self._require(project, actor, "maintainer", "add members")

        project = self.store.add_member(slug, kind, name, role, actor.name, guard)
        log.info("%s added %s %s to %s as %s", actor.name, kind, name, slug, role)
        await self.sync.project(slug)
        return project

    async def set_role(self, actor: Actor, slug: str, kind: str, name: str, role: str) -> Project:
        check_kind(kind)
        check_role(role)

        def guard(project: Project) -> None:
            self._require(project, actor, "maintainer", "change roles")
            if project.member(kind, name) is not None:
                keeps_a_maintainer(project, kind, name, role)

        self._require(self._get(slug), actor, "maintainer", "change roles")
        project = self.store.set_role(slug, kind, name, role, actor.name, guard)
        log.info("%s made %s %s a %s of %s", actor.name, kind, name, role, slug)
        await self.sync.project(slug)
        return project

    async def remove_member(self, actor: Actor, slug: str, kind: str, name: str) -> Project:
        check_kind(kind)

        def guard(project: Project) -> None:
            self._require(project, actor, "maintainer", "remove members")
            if project.member(kind, name) is not None:
                keeps_a_maintainer(project, kind, name, None)

        self._require(self._get(slug), actor, "maintainer", "remove members")
        project = self.store.remove_member(slug, kind, name, actor.name, guard)
        log.info("%s removed %s %s from %s", actor.name, kind, name, slug)
        await self.sync.project(slug)
        return project

    async def _check_exists(self, kind: str, name: str) -> None:
        if not name:
            raise Invalid(f"name: the {kind}'s name is required")
        if kind == "user":
            if await self.directory.user(name) is None:
                raise Invalid(f"name: there is no hub user named {name!r}")
            return
        if name.startswith(GROUP_PREFIX):
            raise Invalid(f"name: {name!r} is a project group; add its project's members directly")
        if not await self.directory.group_exists(name):
            raise Invalid(f"name: there is no hub group named {name!r}")

    # ------------------------------------------------------------ shared servers

    def shared_servers(self, actor: Actor, slug: str) -> list[SharedServer]:
        self._require(self._get(slug), actor, "viewer", "see its shared servers")
        return self.shares.list(slug)

    def server_url(self, owner: str, server: str) -> str:
        return f"{self.hub_base_url}user/{quote(owner, safe='')}/" + (f"{quote(server, safe='')}/" if server else "")

    async def share(self, actor: Actor, token: str, slug: str, server: str) -> list[SharedServer]:
        """Share the actor's own server with every current member (again: with members added since).

        The hub does it with the actor's own token, so it checks the server is theirs.
        """
        project = self._get(slug)
        self._require(project, actor, "viewer", "share a server with it")
        await self._hub_call(self.directory.check_server(actor.name, server, token), actor.name, server)
        users = sorted(user for user in await self.sync.members(project) if user != actor.name)
        for user in users:
            await self._hub_call(self.directory.share_with_user(actor.name, server, user, token), actor.name, server)
        self.shares.record(slug, actor.name, server, self.server_url(actor.name, server), users)
        self.store.record(slug, actor.name, "share-server", "server", f"{actor.name}/{server}")
        log.info("%s shared server %r with project %s (%s)", actor.name, server, slug, ", ".join(users) or "nobody yet")
        return self.shares.list(slug)

    async def revoke(self, actor: Actor, slug: str, owner: str, server: str) -> list[SharedServer]:
        """Stop sharing a server with the project: its owner or an admin."""
        self._require(self._get(slug), actor, "viewer", "see its shared servers")
        if owner != actor.name and not actor.admin:
            raise NotAllowed(f"only {owner} (or an admin) may stop sharing {owner}'s server")
        shared = next((s for s in self.shares.list(slug) if (s.owner, s.server) == (owner, server)), None)
        if shared is None:
            raise NotFound(f"{owner}'s server {server!r} is not shared with {slug}")
        await self.sync.unshare(slug, shared, set(shared.users))
        self.shares.remove(slug, owner, server)
        self.store.record(slug, actor.name, "unshare-server", "server", f"{owner}/{server}")
        log.info("%s stopped sharing server %s/%s with project %s", actor.name, owner, server, slug)
        return self.shares.list(slug)

    @staticmethod
    async def _hub_call(call, owner: str, server: str) -> None:
        try:
            await call
        except HubRefused as refused:
            where = f"{owner}'s {'server ' + repr(server) if server else 'default server'}"
            if refused.status == 404:
                raise NotFound(f"{where} does not exist") from None
            if refused.status == 403:
                raise NotAllowed(f"the hub refused to share {where}: {refused.message}") from None
            raise Invalid(f"the hub refused to share {where}: {refused.message}") from None
