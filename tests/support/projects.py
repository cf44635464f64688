"""Helpers for projects tests: per-module settings, and the users' view through the proxy."""

from __future__ import annotations

import pwd
from pathlib import Path

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name

API = "services/projects/api/projects"


_TAGS_USED: set[str] = set()


def project_settings(projects_root: Path, account_prefix: str, tag: str, **extra) -> dict:
    """Settings for a hub whose projects live in their own root with their own system-group prefix.
    Each module needs its own `tag`: two hubs sharing a root see each other's project folders."""
    if tag in _TAGS_USED:
        raise ValueError(f"project tag {tag!r} is used by another test module; pick another")
    _TAGS_USED.add(tag)
    return {"projects": {"local": {"root": str(projects_root / tag), "group_prefix": f"{account_prefix}p{tag}-"},
                         **extra}}


def account(hub, user: str) -> pwd.struct_passwd:
    return pwd.getpwnam(account_name(user, hub.settings["spawner"]["local"]["account_prefix"]))


def status_of(call) -> int:
    """The HTTP status a call ends with (200 when it succeeds)."""
    try:
        call()
    except ClientError as error:
        return error.status
    return 200


class Person:
    """A hub user with an API token: calls the projects API and their own server's contents API."""

    def __init__(self, hub, name: str, admin: bool = False):
        hub.create_user(name, admin=admin)
        self.hub = hub
        self.name = name
        self.token = hub.user_token(name)
        self.client = HubClient(hub.url, self.token)

    def api(self, method: str, path: str = "", body=None):
        return self.client.request(method, API + path, body)

    def write(self, path: str, text: str, owner: str | None = None):
        """Save a text file through a server's contents API (their own server unless `owner`)."""
        return self.client.request("PUT", f"user/{owner or self.name}/api/contents/{path}",
                                   {"type": "file", "format": "text", "content": text})

    def read(self, path: str, owner: str | None = None) -> str:
        return self.client.request("GET", f"user/{owner or self.name}/api/contents/{path}?type=file&format=text")[
            "content"]


def create_project(hub, maintainer: str, slug: str, members: dict[str, str]) -> dict:
    """A real project through the projects API: `maintainer` creates it, then adds each member
    with their role. Hub groups named like a project's are only ever written by the projects
    service (it deletes those of unknown projects), so tests must not create them by hand."""
    lead = HubClient(hub.url, hub.user_token(maintainer))
    lead.request("POST", API, {"name": slug})
    for name, role in members.items():
        lead.request("POST", f"{API}/{slug}/members", {"name": name, "role": role})
    return lead.request("GET", f"{API}/{slug}")
