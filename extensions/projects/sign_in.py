"""Project groups survive a sign-in through an identity provider.

With `Authenticator.manage_groups`, JupyterHub makes a user's hub groups exactly the
groups the provider returned, at every sign-in, which would drop the user's project
groups. This `post_auth_hook` adds them back from gpulab's database before the hub
applies the list; it also drops any `project:` group the provider itself sent, so only
gpulab's membership decides project roles. Group members count: a project whose member
is the provider group "ml-team" reaches everyone the provider says is in "ml-team".
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gpulab.db import make_engine, make_session_factory

from .membership import GROUP_PREFIX, project_group
from .store import ProjectStore


def groups_with_projects(provider_groups: list[str], roles: dict[str, str]) -> list[str]:
    """The provider's groups (minus any posing as project groups) plus the user's project groups (pure)."""
    kept = [g for g in provider_groups if not g.startswith(GROUP_PREFIX)]
    return sorted(set(kept) | {project_group(slug, role) for slug, role in roles.items()})


def open_store(url: str) -> ProjectStore:
    return ProjectStore(make_session_factory(make_engine(url)), lambda: datetime.now(timezone.utc))


class StoreHook:
    """A hub hook that reads projects (opened on first use)."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self._store: ProjectStore | None = None

    @property
    def store(self) -> ProjectStore:
        if self._store is None:
            self._store = open_store(self.database_url)
        return self._store


class ProjectGroupsAtSignIn(StoreHook):
    """`c.Authenticator.post_auth_hook`."""

    async def __call__(self, authenticator, handler, authentication: dict[str, Any]) -> dict[str, Any]:
        if not authentication or not authenticator.manage_groups or authentication.get("groups") is None:
            return authentication  # the hub leaves this user's groups alone
        provider_groups = [g for g in authentication["groups"] if not g.startswith(GROUP_PREFIX)]
        roles = self.store.roles_of(authentication["name"], provider_groups)
        authentication["groups"] = groups_with_projects(provider_groups, roles)
        return authentication
