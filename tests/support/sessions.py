"""Real signed-in sessions for tests: local accounts signed up, approved by an admin, signed in.

Forms are posted exactly as a browser posts them (the XSRF cookie and field included).
"""

from __future__ import annotations

from typing import cast

import requests

from .hub import RunningHub, wait_for

PASSWORD = "correct-horse-battery"


def form_session(hub: RunningHub, path: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    page = session.get(hub.url + path)
    assert page.status_code == 200, page.status_code
    return session, session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")


def sign_up(hub: RunningHub, name: str, password: str = PASSWORD) -> str:
    session, xsrf = form_session(hub, "hub/signup")
    response = session.post(hub.url + "hub/signup", data={
        "_xsrf": xsrf, "username": name, "signup_password": password, "signup_password_confirmation": password})
    return response.text


class SignInResponse(requests.Response):
    """The sign-in form's response, with the session that holds its cookies."""

    session: requests.Session


def sign_in(hub: RunningHub, name: str, password: str = PASSWORD) -> SignInResponse:
    """The response to the sign-in form; `response.session` carries the cookies."""
    session, xsrf = form_session(hub, "hub/login")
    response = cast(SignInResponse, session.post(hub.url + "hub/login", allow_redirects=False,
                                                 data={"_xsrf": xsrf, "username": name, "password": password}))
    response.session = session
    return response


def admin_password(hub: RunningHub, admin: str) -> str:
    path = hub.data_dir / "initial-admin-password"
    wait_for(lambda: path.exists() and f"{admin}: " in path.read_text(), 30, f"{admin}'s password")
    return dict(line.split(": ", 1) for line in path.read_text().splitlines())[admin]


def signed_in_user(hub: RunningHub, name: str, admin: str) -> requests.Session:
    """A browser-like session of `name`: signed up, approved by `admin` (an admin_users entry), signed in."""
    sign_up(hub, name)
    sign_in(hub, admin, admin_password(hub, admin)).session.get(hub.url + f"hub/authorize/{name}")
    response = sign_in(hub, name)
    assert response.status_code == 302, response.text[:300]
    return response.session


def browser_sign_in(page, hub: RunningHub, name: str, password: str = PASSWORD) -> None:
    """Fill and send the hub's sign-in form in a Playwright page (the caller waits for what follows)."""
    page.goto(hub.url + "hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
