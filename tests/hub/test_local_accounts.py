"""Local accounts (NativeAuthenticator through gpulab): sign-up, admin approval, lock-out.

Driven over HTTP exactly as the browser's forms post them (XSRF cookie and field included).
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.support.hub import wait_for

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"auth": {
        "admin_users": ["boss"],
        "local": {"allowed_failed_logins": 3, "seconds_before_next_try": 600},
    }})


def form_session(hub, path: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    page = session.get(hub.url + path)
    assert page.status_code == 200
    return session, session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")


def sign_up(hub, name: str, password: str) -> str:
    session, xsrf = form_session(hub, "hub/signup")
    response = session.post(hub.url + "hub/signup", data={
        "_xsrf": xsrf, "username": name, "signup_password": password, "signup_password_confirmation": password})
    return response.text


def sign_in(hub, name: str, password: str) -> requests.Response:
    session, xsrf = form_session(hub, "hub/login")
    response = session.post(hub.url + "hub/login", data={"_xsrf": xsrf, "username": name, "password": password},
                            allow_redirects=False)
    response.session = session
    return response


def admin_password(hub) -> str:
    path = hub.data_dir / "initial-admin-password"
    wait_for(path.exists, 30, "the admin's password file")
    return dict(line.split(": ", 1) for line in path.read_text().splitlines())["boss"]


def test_a_sign_up_waits_for_an_admin_then_signs_in(hub):
    assert "sent to the admin" in sign_up(hub, "newbie", PASSWORD)
    waiting = sign_in(hub, "newbie", PASSWORD)
    assert waiting.status_code == 200 and "has not been approved by an administrator yet" in waiting.text

    admin = sign_in(hub, "boss", admin_password(hub))
    assert admin.status_code == 302
    approval = admin.session.get(hub.url + "hub/authorize/newbie")
    assert approval.status_code == 200 and "newbie" in approval.text

    approved = sign_in(hub, "newbie", PASSWORD)
    assert approved.status_code == 302 and re.search(r"/hub/(spawn|home|user/newbie)|/hub/$", approved.headers["Location"])


def test_only_admins_approve(hub):
    sign_up(hub, "pending-one", PASSWORD)
    sign_up(hub, "regular", PASSWORD)
    sign_in(hub, "boss", admin_password(hub)).session.get(hub.url + "hub/authorize/regular")
    regular = sign_in(hub, "regular", PASSWORD)
    assert regular.status_code == 302
    attempt = regular.session.get(hub.url + "hub/authorize/pending-one", allow_redirects=False)
    assert attempt.status_code == 403
    assert "not been approved" in sign_in(hub, "pending-one", PASSWORD).text


def test_repeated_wrong_passwords_block_the_username(hub):
    sign_up(hub, "forgetful", PASSWORD)
    admin = sign_in(hub, "boss", admin_password(hub))
    admin.session.get(hub.url + "hub/authorize/forgetful")
    for _ in range(3):
        assert "Invalid username or password" in sign_in(hub, "forgetful", "wrong-password-x").text
    assert sign_in(hub, "forgetful", PASSWORD).status_code == 200  # blocked: the form again, no redirect
