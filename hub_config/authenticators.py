"""Authenticators gpulab configures, and the helpers they need."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.handlers import SignUpHandler, ToggleAuthorizationHandler
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode


class LocalLoginHandler(NativeLoginHandler):
    """NativeAuthenticator's sign-in page, working on JupyterHub 6.

    NativeAuthenticator 1.3.0 (the newest release) times sign-ins with the statsd client
    that JupyterHub 6 removed, and its `_render` refuses the extra arguments JupyterHub's
    error path passes; both made every sign-in a 500.
    """

    def _render(self, login_error=None, username=None, **_ignored):
        return super()._render(login_error=login_error, username=username)

    async def post(self):
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.arguments}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        error = "Invalid username or password."
        info = self.authenticator.get_user(data.get("username", ""))
        if info is not None and not info.is_authorized and info.is_valid_password(data.get("password", "")):
            error = f"User {info.username} has not been approved by an administrator yet."
        self.finish(await self._render(login_error=error, username=data.get("username")))


class _ApprovedAreHubUsers:
    """An approved sign-up becomes a hub user at once, not at its first sign-in, so a team lead
    can add the new colleague to a project right after approving them."""

    db: Any  # (the handler's)
    authenticator: Any
    user_from_username: Callable[[str], Any]

    def hub_user_if_approved(self, name: str) -> None:
        info = UserInfo.find(self.db, self.authenticator.normalize_username(name))
        if info is not None and info.is_authorized:
            self.user_from_username(info.username)


class ApprovalHandler(_ApprovedAreHubUsers, ToggleAuthorizationHandler):
    async def get(self, slug):
        await super().get(slug)  # admins only; toggles the approval
        self.hub_user_if_approved(slug)


class OpenSignUpHandler(_ApprovedAreHubUsers, SignUpHandler):
    async def post(self):
        await super().post()
        self.hub_user_if_approved(self.get_body_argument("username", "", strip=False))  # open sign-up approves


HANDLERS = {r"/login": LocalLoginHandler, r"/authorize/([^/]*)": ApprovalHandler, r"/signup": OpenSignUpHandler}


class LocalAccountsAuthenticator(NativeAuthenticator):
    """NativeAuthenticator that gives each configured admin a first password.

    Without this, the first person to sign up with an admin's name would become the
    admin. Instead the hub creates the admin's account itself, with a random password
    written to a file only root can read; the admin signs in and changes it.
    """

    initial_admin_password_file = Unicode(
        "",
        help="""File that receives the generated passwords of admins who have no local account yet,
        one `name: password` line each, mode 0600. Default "" (no account is created).
        Example "/srv/gpulab/.gpulab/initial-admin-password".""",
    ).tag(config=True)

    def get_handlers(self, app):
        return [(path, HANDLERS.get(path, handler)) for path, handler in super().get_handlers(app)]

    def add_user(self, user):
        # Called by the hub for every user it knows at start-up, admins from config included.
        if (
            self.initial_admin_password_file
            and user.name in self.admin_users
            and UserInfo.find(self.db, user.name) is None
        ):
            self._create_admin_account(user.name)
        return super().add_user(user)

    def _create_admin_account(self, name: str) -> None:
        password = secrets.token_urlsafe(12)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
        self.db.commit()
        path = Path(self.initial_admin_password_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            out.write(f"{name}: {password}\n")
        self.log.info("Created the local account of admin %s; its password is in %s", name, path)


def github_team_groups(auth_state: dict) -> list[str]:
    """Hub group names for a GitHub user: each team as "org:team-slug"."""
    teams = auth_state.get("teams") or []
    return sorted(f"{t['organization']['login']}:{t['slug']}" for t in teams)


def pending_signups(user) -> int:
    """Sign-ups waiting for approval, for the navigation bar of an admin (0 for anyone else):
    a template variable the hub evaluates per page with the signed-in user."""
    if user is None or not getattr(user, "admin", False):
        return 0
    return user.db.query(UserInfo).filter(UserInfo.is_authorized.is_(False)).count()
