"""Local accounts (NativeAuthenticator through gpulab): sign-up, admin approval, lock-out.

Driven over HTTP exactly as the browser's forms post them (XSRF cookie and field included).
"""

from __future__ import annotations

import re

import pytest

from tests.support.sessions import PASSWORD
from tests.support.sessions import admin_password as password_of
from tests.support.sessions import sign_in, sign_up


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"auth": {
        "admin_users": ["boss"],
        "local": {"allowed_failed_logins": 3, "seconds_before_next_try": 600},
    }})


def test_a_sign_up_waits_for_an_admin_then_signs_in(hub):
    assert "sent to the admin" in sign_up(hub, "newbie", PASSWORD)
    waiting = sign_in(hub, "newbie", PASSWORD)
    assert waiting.status_code == 200 and "has not been approved by an administrator yet" in waiting.text

    admin = sign_in(hub, "boss", password_of(hub, "boss"))
    assert admin.status_code == 302
    approval = admin.session.get(hub.url + "hub/authorize/newbie")
    assert approval.status_code == 200 and "newbie" in approval.text

    approved = sign_in(hub, "newbie", PASSWORD)
    assert approved.status_code == 302 and re.search(r"/hub/(spawn|home|user/newbie)|/hub/$", approved.headers["Location"])


def test_only_admins_approve(hub):
    sign_up(hub, "pending-one", PASSWORD)
    sign_up(hub, "regular", PASSWORD)
    sign_in(hub, "boss", password_of(hub, "boss")).session.get(hub.url + "hub/authorize/regular")
    regular = sign_in(hub, "regular", PASSWORD)
    assert regular.status_code == 302
    attempt = regular.session.get(hub.url + "hub/authorize/pending-one", allow_redirects=False)
    assert attempt.status_code == 403
    assert "not been approved" in sign_in(hub, "pending-one", PASSWORD).text


def test_repeated_wrong_passwords_block_the_username(hub):
    sign_up(hub, "forgetful", PASSWORD)
    admin = sign_in(hub, "boss", password_of(hub, "boss"))
    admin.session.get(hub.url + "hub/authorize/forgetful")
    for _ in range(3):
        assert "Invalid username or password" in sign_in(hub, "forgetful", "wrong-password-x").text
    assert sign_in(hub, "forgetful", PASSWORD).status_code == 200  # blocked: the form again, no redirect


def signups_link(page: str) -> str | None:
    found = re.search(r'<a class="nav-link" href="/hub/authorize" id="gpulab-signups">(.*?)</a>', page, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split()) if found else None


def test_admins_see_waiting_sign_ups_in_the_navigation(hub):
    """Issue 15 item 1: /hub/authorize had no link, and nothing told an admin a sign-up waited."""
    admin = sign_in(hub, "boss", password_of(hub, "boss")).session
    before = signups_link(admin.get(hub.url + "hub/home").text)
    waiting = int(before.split()[-1]) if before and before.split()[-1].isdigit() else 0
    sign_up(hub, "hopeful", PASSWORD)
    assert signups_link(admin.get(hub.url + "hub/home").text) == f"Sign-ups {waiting + 1}"
    admin.get(hub.url + "hub/authorize/hopeful")
    assert signups_link(admin.get(hub.url + "hub/home").text) == (f"Sign-ups {waiting}" if waiting else "Sign-ups")
    member = sign_in(hub, "hopeful", PASSWORD).session
    assert signups_link(member.get(hub.url + "hub/home").text) is None


def test_an_approved_sign_up_can_join_a_project_before_signing_in(hub):
    """Issue 15 item 1: "Add member" said "there is no hub user named 'bob'" until bob signed in once."""
    from tests.support.projects import create_project

    sign_up(hub, "colleague", PASSWORD)
    names = [u["name"] for u in hub.api.request("GET", "hub/api/users")]
    assert "colleague" not in names  # waiting for approval: not a hub user yet
    sign_in(hub, "boss", password_of(hub, "boss")).session.get(hub.url + "hub/authorize/colleague")
    project = create_project(hub, "boss", "first-team", {"colleague": "editor"})
    assert {m["name"]: m["role"] for m in project["members"]}["colleague"] == "editor"
    assert sign_in(hub, "colleague", PASSWORD).status_code == 302


def test_each_service_is_in_the_navigation_once(hub):
    """Issue 15 item 5: the Services menu repeated "scheduler" and "mlflow" next to their own links."""
    page = sign_in(hub, "boss", password_of(hub, "boss")).session.get(hub.url + "hub/home").text
    links = re.findall(r'<a class="(?:nav-link|dropdown-item)" href="([^"]+)"', page)
    services = [link for link in links if "/services/" in link]
    assert sorted(services) == sorted(set(services)) and "/services/mlflow/" in services, links
    assert "dropdown-item" not in page or "/services/" not in page.split("dropdown-menu", 1)[1].split("</ul>", 1)[0]
