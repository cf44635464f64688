"""MLflow's authorization function for gpulab: hub tokens and hub OAuth sessions.

MLflow's basic-auth app calls `authenticate()` (named in its auth config as
`authorization_function`) for every protected request, from Flask and, through its bridge,
from its FastAPI routes. It returns the hub user's name, and MLflow's own permission model
takes it from there. Credentials, in order: `Authorization: Bearer <hub token>` (what the
MLflow client sends from MLFLOW_TRACKING_TOKEN; `token <hub token>` works too), then the
browser's session cookie.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlparse

from flask import Response, g, request
from werkzeug.wrappers import Response as AnyResponse  # (what redirect() makes: flask's is a subclass)
from werkzeug.datastructures import Authorization

from .accounts import Accounts
from .browser import BrowserSessions
from .identity import HubIdentities, HubUnavailable, Identity

log = logging.getLogger("gpulab.mlflow")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
BOOTSTRAP_ADMIN = "gpulab:mlflow-bootstrap-admin"  # MLflow needs one; no hub user may map to it


class Gate:
    def __init__(self, identities: HubIdentities, browser: BrowserSessions, accounts: Accounts):
        self.identities = identities
        self.browser = browser
        self.accounts = accounts

    def authenticate(self) -> Authorization | AnyResponse:
        identity = g.get("gpulab_identity")
        if identity is None:
            outcome = self._identify()
            if isinstance(outcome, AnyResponse):
                return outcome
            identity = g.gpulab_identity = outcome
        return Authorization("bearer", {"username": identity.name})

    def _identify(self) -> Identity | AnyResponse:
        token, from_cookie = self._credentials()
        if not token:
            if self.browser.wants_page(request):
                return self.browser.sign_in(request)
            return _error(401, "UNAUTHENTICATED", "send a hub API token (MLFLOW_TRACKING_TOKEN) or sign in to the hub")
        try:
            identity = self.identities.identify(token)
        except HubUnavailable as exc:
            log.error("%s", exc)
            return _error(503, "TEMPORARILY_UNAVAILABLE", "cannot check the token with the hub right now; try again")
        if identity is None:
            if from_cookie and self.browser.wants_page(request):
                return self.browser.sign_in(request)  # the hub session ended: sign in again
            return _error(401, "UNAUTHENTICATED", "the hub does not accept this token for MLflow")
        if identity.name == BOOTSTRAP_ADMIN:
            return _error(403, "PERMISSION_DENIED", "this user name is reserved")
        if from_cookie and request.method not in SAFE_METHODS and not same_origin(request):
            return _error(403, "PERMISSION_DENIED", "cross-origin requests may not change MLflow data")
        self.accounts.sync(identity)
        return identity

    def _credentials(self) -> tuple[str | None, bool]:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip():
            return value.strip(), False
        token = self.browser.token(request)
        return token, token is not None


def same_origin(req) -> bool:
    """A cookie-authenticated change must come from a page of this site (CSRF defence)."""
    if req.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    origin = req.headers.get("Origin") or req.headers.get("Referer")
    if not origin:
        return True  # not sent by a browser page
    host = req.headers.get("X-Forwarded-Host") or req.headers.get("Host", "")
    return urlparse(origin).netloc == host


def _error(status: int, code: str, message: str) -> Response:
    return Response(json.dumps({"error_code": code, "message": message}), status=status,
                    mimetype="application/json")


# MLflow calls `authenticate` by its import path (the auth config's authorization_function), so
# the gate it asks has to be reachable from this module: set once at start-up by `install`.
_gate: Gate | None = None


def install(gate: Gate) -> None:
    global _gate
    _gate = gate


def current_admin_flag() -> bool | None:
    """The hub's admin flag of the user of the current request (None outside one)."""
    from flask import has_request_context

    identity = g.get("gpulab_identity") if has_request_context() else None
    return None if identity is None else identity.admin


def authenticate() -> Authorization | AnyResponse:
    """The `authorization_function` MLflow's auth config names."""
    if _gate is None:
        return _error(503, "TEMPORARILY_UNAVAILABLE", "gpulab's MLflow gate is not installed")
    return _gate.authenticate()
