"""Browsers sign in to MLflow through the hub's OAuth; a signed cookie keeps the hub token.

MLflow's app is Flask, so this is the Flask counterpart of JupyterHub's HubOAuthenticated
handlers: a page request without a session is sent to the hub's authorize URL (with PKCE
and a state cookie), and the callback trades the code for a hub OAuth token.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlparse

from flask import Request, Response, redirect
from werkzeug.wrappers import Response as AnyResponse  # (what redirect() makes: flask's is a subclass)
from itsdangerous import BadSignature, URLSafeSerializer

log = logging.getLogger("gpulab.mlflow")

STATE_MAX_AGE = 600  # seconds a sign-in may take


class BrowserSessions:
    def __init__(self, hub_oauth, secret_key: str, prefix: str):
        self.hub_oauth = hub_oauth  # jupyterhub.services.auth.HubOAuth
        self.prefix = prefix.rstrip("/") + "/"
        self.cookie_name = hub_oauth.cookie_name
        self.state_cookie_name = hub_oauth.cookie_name + "-oauth-state"
        self.callback_path = urlparse(hub_oauth.oauth_redirect_uri).path
        self._sessions = URLSafeSerializer(secret_key, salt="gpulab-mlflow-session")
        self._states = URLSafeSerializer(secret_key, salt="gpulab-mlflow-oauth-state")

    # ------------------------------------------------------------ requests

    def token(self, request: Request) -> str | None:
        """The hub OAuth token this browser signed in with, if any."""
        value = request.cookies.get(self.cookie_name)
        if not value:
            return None
        try:
            return self._sessions.loads(value)
        except BadSignature:
            return None

    @staticmethod
    def wants_page(request: Request) -> bool:
        return request.method == "GET" and "text/html" in request.headers.get("Accept", "")

    def sign_in(self, request: Request) -> AnyResponse:
        """Send the browser to the hub to sign in, then back to where it was going."""
        verifier, challenge, method = self.hub_oauth.generate_pkce_code_challenge()
        state = self.hub_oauth.generate_state(next_url=self._local(request.full_path.rstrip("?")), code_verifier=verifier)
        params = {"state": state, "code_challenge": challenge, "code_challenge_method": method}
        response = redirect(self.hub_oauth.login_url + "&" + urlencode(params), 302)
        response.set_cookie(self.state_cookie_name, self._states.dumps(state), max_age=STATE_MAX_AGE,
                            **self._cookie_options(request))
        return response

    def finish_sign_in(self, request: Request) -> AnyResponse:
        """The OAuth callback: check the state, trade the code for a token, set the session cookie."""
        if request.args.get("error"):
            return _plain(400, f"sign-in failed: {request.args.get('error_description') or request.args['error']}")
        code, state = request.args.get("code"), request.args.get("state")
        if not code or not state:
            return _plain(400, "the sign-in callback needs a code and a state; sign in again")
        try:
            expected = self._states.loads(request.cookies.get(self.state_cookie_name, ""))
        except BadSignature:
            expected = None
        if expected != state:
            return _plain(403, "the sign-in state does not match this browser; sign in again")
        next_url = self._local(self.hub_oauth.get_next_url(state))
        verifier = self.hub_oauth.get_code_verifier(state)
        self.hub_oauth.clear_oauth_state(state)
        try:
            token = self.hub_oauth.token_for_code(code, code_verifier=verifier, sync=True)
        except Exception as exc:  # the hub refused the code (expired, replayed) or is down
            log.warning("OAuth code exchange failed: %s", exc)
            return _plain(403, "the hub did not accept this sign-in; sign in again")
        response = redirect(next_url, 302)
        # One cookie per response: MLflow's SecurityHeadersMiddleware keeps only the last
        # Set-Cookie header. The spent state cookie expires by itself (its state is cleared).
        response.set_cookie(self.cookie_name, self._sessions.dumps(token), **self._cookie_options(request))
        return response

    # ------------------------------------------------------------ helpers

    def _local(self, url: str | None) -> str:
        """Only ever redirect within this service (no open redirects)."""
        if url and url.startswith(self.prefix) and not url.startswith("//"):
            return url
        return self.prefix

    def _cookie_options(self, request: Request) -> dict:
        return {"path": self.prefix, "httponly": True, "samesite": "Lax", "secure": request.is_secure}


def _plain(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")
