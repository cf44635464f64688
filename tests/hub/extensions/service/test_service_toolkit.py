"""The service toolkit in a real hub: identity from hub tokens, one error path, hub-look pages."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from gpulab.hub_config.client import ClientError, HubClient


REPO = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.prepare()
    port = hub.ports["hub"] + 9
    nav = json.dumps([{"label": "Echo", "url": "/services/echo/"}])
    (hub.workdir / "jupyterhub_config.d" / "10-echo.py").write_text(f"""
c.JupyterHub.services.append({{
    "name": "echo", "url": "http://127.0.0.1:{port}", "oauth_no_confirm": True,
    "command": [{sys.executable!r}, "-m", "tests.support.echo_service"],
    "environment": {{"PYTHONPATH": {str(REPO)!r}, "GPULAB_NAV": {nav!r}}},
}})
# Its own role: gpulab's services define the "user" role already, and a second one is an error.
c.JupyterHub.load_roles.append({{"name": "echo-users", "scopes": ["access:services!service=echo"],
                                "users": ["toolkit-user"]}})
""")
    hub.start()
    hub.create_user("toolkit-user")
    return hub


@pytest.fixture(scope="module")
def as_user(hub):
    return HubClient(hub.url, hub.user_token("toolkit-user"))


def raw(hub, method, path, body: bytes | None = None, token: str | None = None):
    request = urllib.request.Request(hub.url + path, data=body, method=method)
    if token:
        request.add_header("Authorization", f"token {token}")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_identity_comes_from_the_hub_token(hub, as_user):
    assert as_user.request("GET", "services/echo/api/whoami") == {"name": "toolkit-user"}


def test_no_token_is_403_with_a_message(hub):
    status, headers, body = raw(hub, "GET", "services/echo/api/whoami")
    assert status == 403
    assert headers["Content-Type"] == "application/json"
    assert "authentication required" in json.loads(body)["message"]


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"times": 2}', "word"),
    (b'{"word": "a", "times": 9}', "times"),
])
def test_bad_bodies_are_400_naming_the_field(hub, as_user, body, needle):
    status, _, payload = raw(hub, "POST", "services/echo/api/echo", body, as_user.token)
    assert status == 400
    assert needle in json.loads(payload)["message"]


def test_core_errors_map_to_their_status(hub, as_user):
    with pytest.raises(ClientError) as refused:
        as_user.request("POST", "services/echo/api/echo", {"word": "forbidden", "times": 1})
    assert (refused.value.status, refused.value.message) == (403, "that word is not allowed")
    assert as_user.request("POST", "services/echo/api/echo", {"word": "ab", "times": 2}) == {"echo": "abab"}


def test_pages_extend_the_hub_look(hub, as_user):
    status, _, body = raw(hub, "GET", "services/echo/", token=as_user.token)
    page = body.decode()
    assert status == 200
    assert '<p id="greeting">hello toolkit-user</p>' in page
    assert "/hub/static/css/style.min.css" in page  # the hub's stylesheet
    assert 'href="/hub/home"' in page and 'href="/services/echo/">Echo</a>' in page


def test_pages_send_visitors_without_a_session_to_sign_in(hub):
    status, headers, _ = raw(hub, "GET", "services/echo/")
    assert status == 302
    assert "/hub/api/oauth2/authorize" in headers["Location"]
