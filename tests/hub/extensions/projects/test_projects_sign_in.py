"""Project groups survive sign-in through an identity provider that manages hub groups.

With `manage_groups`, JupyterHub replaces a user's groups with the provider's at every
sign-in. The provider here is a real OpenID Connect implementation (oidc-provider-mock)
serving the authorization-code flow over HTTP; not covered: provider-specific claims of
Keycloak, GitHub or GitLab.
"""

from __future__ import annotations

import pytest
import requests
from oidc_provider_mock import run_server_in_thread

from tests.support.projects import Person, project_settings


CLIENT_SECRET = "oidc-projects-secret-9a1"


@pytest.fixture(scope="module")
def provider():
    with run_server_in_thread() as server:
        url = f"http://localhost:{server.server_port}"
        for subject, name, groups in [("oscar-sub", "oscar", ["ml-team", "vision-lab"]),
                                      ("mallory-sub", "mallory", ["ml-team", "project:secret:maintainer"])]:
            requests.put(f"{url}/users/{subject}", json={"preferred_username": name, "groups": groups}
                         ).raise_for_status()
        yield url


@pytest.fixture(scope="module")
def hub(module_hub_factory, provider, projects_root, account_prefix):
    settings = project_settings(projects_root, account_prefix, "o")
    settings["auth"] = {"type": "oidc", "oauth": {
        "client_id": "gpulab-hub", "allowed_groups": ["ml-team"],
        "oidc": {"authorize_url": f"{provider}/oauth2/authorize", "token_url": f"{provider}/oauth2/token",
                 "userdata_url": f"{provider}/userinfo"}}}
    return module_hub_factory.start(settings, extra_env={"OAUTH_CLIENT_SECRET": CLIENT_SECRET})


def sign_in(hub, subject: str) -> None:
    session = requests.Session()
    form = session.get(hub.url + "hub/oauth_login")
    assert form.status_code == 200 and 'name="sub"' in form.text, form.text[:300]
    assert session.post(form.url, data={"sub": subject}).status_code == 200


def groups(hub, user: str) -> list[str]:
    return sorted(hub.api.request("GET", f"hub/api/users/{user}")["groups"])


def test_project_groups_survive_each_sign_in(hub):
    hub.api.request("POST", "hub/api/groups/ml-team", {})
    lead = Person(hub, "lead")
    lead.api("POST", "", {"name": "vision"})
    lead.api("POST", "/vision/members", {"kind": "group", "name": "ml-team", "role": "viewer"})

    # oscar's first sign-in: the provider's groups, plus the project he is in through ml-team
    sign_in(hub, "oscar-sub")
    assert groups(hub, "oscar") == ["ml-team", "project:vision:viewer", "vision-lab"]

    # made an editor: the service moves him between the hub groups at once ...
    lead.api("POST", "/vision/members", {"name": "oscar", "role": "editor"})
    assert groups(hub, "oscar") == ["ml-team", "project:vision:editor", "vision-lab"]
    # ... and the next sign-in, which resets his groups to the provider's, keeps it
    sign_in(hub, "oscar-sub")
    assert groups(hub, "oscar") == ["ml-team", "project:vision:editor", "vision-lab"]
    assert lead.api("GET", "/vision")["members"][0]["name"] == "ml-team"


def test_a_provider_cannot_hand_out_project_roles(hub):
    sign_in(hub, "mallory-sub")
    assert groups(hub, "mallory") == ["ml-team", "project:vision:viewer"]
