"""Sign-in through a real OpenID Connect provider (oidc-provider-mock) with a groups claim.

The provider is a real OIDC implementation (authorization code flow, token and userinfo
endpoints) running in this process; the hub talks to it over HTTP like it would to
Keycloak. Not covered: provider-specific quirks of Keycloak, GitHub, GitLab or Google.
"""

from __future__ import annotations

import re

import pytest
import requests
from oidc_provider_mock import run_server_in_thread


CLIENT_SECRET = "oidc-test-secret-4c1d"


@pytest.fixture(scope="module")
def provider():
    with run_server_in_thread() as server:
        url = f"http://localhost:{server.server_port}"
        requests.put(f"{url}/users/oscar-sub", json={
            "preferred_username": "oscar", "email": "oscar@example.com", "groups": ["ml-team", "vision-lab"]}).raise_for_status()
        requests.put(f"{url}/users/eve-sub", json={
            "preferred_username": "eve", "email": "eve@example.com", "groups": ["marketing"]}).raise_for_status()
        yield url


@pytest.fixture(scope="module")
def hub(module_hub_factory, provider):
    return module_hub_factory.start({"auth": {
        "type": "oidc",
        "oauth": {
            "client_id": "gpulab-hub",
            "allowed_groups": ["ml-team"],
            "admin_groups": ["ml-admins"],
            "oidc": {
                "authorize_url": f"{provider}/oauth2/authorize",
                "token_url": f"{provider}/oauth2/token",
                "userdata_url": f"{provider}/userinfo",
            },
        },
    }}, extra_env={"OAUTH_CLIENT_SECRET": CLIENT_SECRET})


def sign_in(hub, subject: str) -> requests.Response:
    """Follow the browser's path: hub -> provider's consent form -> hub callback."""
    session = requests.Session()
    form = session.get(hub.url + "hub/oauth_login")
    assert form.status_code == 200 and 'name="sub"' in form.text, form.text[:500]
    return session.post(form.url, data={"sub": subject})


def test_a_member_of_an_allowed_group_signs_in_and_lands_in_the_idp_groups(hub):
    response = sign_in(hub, "oscar-sub")
    assert response.status_code == 200
    assert re.search(r"/hub/(home|spawn|user/oscar)", response.url), response.url
    user = hub.api.request("GET", "hub/api/users/oscar")
    assert sorted(user["groups"]) == ["ml-team", "vision-lab"]
    assert user["admin"] is False


def test_someone_outside_the_allowed_groups_is_refused(hub):
    response = sign_in(hub, "eve-sub")
    assert response.status_code == 403
    users = [u["name"] for u in hub.api.request("GET", "hub/api/users")]
    assert "eve" not in users


def test_the_client_secret_never_reaches_the_log(hub):
    sign_in(hub, "oscar-sub")
    assert CLIENT_SECRET not in (hub.data_dir / "logs" / "hub.log").read_text()
    assert CLIENT_SECRET not in hub.log_path.read_text()
