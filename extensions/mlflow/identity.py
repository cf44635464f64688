"""Who a hub token belongs to: asked of the hub, remembered briefly.

A token is accepted when the hub says it may access this service (a user server's own
token, a user's API token, or the OAuth token of a browser session). The user's groups
and admin flag come from the hub with the service's own token, so project membership
changes made through the hub API reach MLflow within `ttl` seconds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

import requests

from gpulab.extensions.projects.membership import ROLES, project_group


class HubUnavailable(Exception):
    """The hub could not be asked; the caller should retry later (503)."""


@dataclass(frozen=True)
class Identity:
    name: str
    admin: bool
    groups: frozenset[str]


@dataclass
class _Entry:
    identity: Identity
    expires: float


class HubIdentities:
    """Token -> Identity, from the hub, cached for `ttl` seconds (at most `max_entries` tokens)."""

    def __init__(self, hub_auth, ttl: float, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 10_000, timeout: float = 10.0):
        self.hub_auth = hub_auth  # jupyterhub.services.auth.HubAuth (or HubOAuth)
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self.timeout = timeout
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()  # one HTTP session per thread: requests' sessions are not thread-safe

    def identify(self, token: str) -> Identity | None:
        """The hub user `token` belongs to, or None if the hub does not accept it here."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry.expires > now:
                return entry.identity
        identity = self._ask_hub(token)
        if identity is not None and self.ttl > 0:
            with self._lock:
                self._cache[key] = _Entry(identity, now + self.ttl)
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return identity

    def project_exists(self, slug: str) -> bool:
        """Whether the hub has any of project `slug`'s groups (asked with the service's token)."""
        return any(self._get(f"groups/{quote(project_group(slug, role), safe='')}", self.hub_auth.api_token)
                   for role in ROLES)

    def forget(self, token: str) -> None:
        with self._lock:
            self._cache.pop(hashlib.sha256(token.encode()).hexdigest(), None)

    # ------------------------------------------------------------ the hub

    def _ask_hub(self, token: str) -> Identity | None:
        model = self._get("user", token)
        if not model or model.get("kind", "user") != "user":
            return None
        # The token must carry access to this service (access:services!service=mlflow).
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            return None
        details = self._get(f"users/{quote(model['name'], safe='')}", self.hub_auth.api_token)
        if details is None:
            return None
        return Identity(details["name"], bool(details.get("admin")), frozenset(details.get("groups") or ()))

    def _get(self, path: str, token: str) -> dict | None:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        url = self.hub_auth.api_url.rstrip("/") + "/" + path
        try:
            response = session.get(url, headers={"Authorization": f"token {token}"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise HubUnavailable(f"cannot reach the hub at {self.hub_auth.api_url}: {exc}") from None
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code >= 400:
            raise HubUnavailable(f"the hub answered {response.status_code} checking a token")
        return response.json()
