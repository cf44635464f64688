"""The projects REST API in a real hub: rules, validation paths, and the committed OpenAPI document.

Every call goes through `CheckedApi`, which fails on any status or body the OpenAPI document
does not describe; the last test checks that every described response was exercised.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import pytest

from tests.support.openapi import CheckedApi, load_spec, operations
from tests.support.projects import project_settings


SPEC = Path(str(resources.files("gpulab.extensions.projects") / "openapi.yaml"))


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    settings = {**project_settings(projects_root, account_prefix, "a"), "auth": {"admin_users": ["root-admin"]}}
    hub = module_hub_factory.start(settings)
    for name in ("lead", "eve", "viv", "ed", "ned", "root-admin"):
        hub.create_user(name)
    hub.api.request("POST", "hub/api/groups/ml-team", {"users": ["ned"]})
    return hub


@pytest.fixture(scope="module")
def api(hub):
    return CheckedApi(load_spec(SPEC), hub.url + "services/projects")


@pytest.fixture(scope="module")
def tokens(hub):
    return {name: hub.user_token(name) for name in ("lead", "eve", "viv", "ed", "ned", "root-admin")}


@pytest.fixture(scope="module")
def vision(api, tokens):
    status, project = api.call("POST", "/api/projects", tokens["lead"], {"name": "vision", "description": "cv"})
    assert status == 201 and project["your_role"] == "maintainer"
    api.call("POST", "/api/projects/vision/members", tokens["lead"], {"name": "viv", "role": "viewer"})
    api.call("POST", "/api/projects/vision/members", tokens["lead"], {"name": "ed", "role": "editor"})
    return project


def message(api, method, path, token, body=None, raw=None, expect=400) -> str:
    status, error = api.call(method, path, token, body, raw)
    assert status == expect, (status, error)
    return error["message"]


@pytest.mark.parametrize("name, needle", [
    ("../etc", "must not contain '/'"),
    ("a/b", "must not contain '/'"),
    ("..", "must not contain '/'"),
    (".hidden", "nor start with '.'"),
    ("Vision", "lowercase letters"),
    ("1vision", "start with a letter"),
    ("vision-", "end with a letter or digit"),
    ("x", "at least 2 characters"),
    ("v" * 41, "at most 40 characters"),
    ("api", "'api' is reserved"),
    ("admin", "'admin' is reserved"),
    ("", "a project name is required"),
])
def test_bad_names_are_400_with_a_message(api, tokens, name, needle):
    assert needle in message(api, "POST", "/api/projects", tokens["eve"], {"name": name})


@pytest.mark.parametrize("raw, needle", [
    (b"{oops", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"description": "no name"}', "name"),
    (b'{"name": "fine", "colour": "red"}', "colour"),
    (b'{"name": 7}', "name"),
])
def test_malformed_bodies_are_400_naming_the_field(api, tokens, raw, needle):
    assert needle in message(api, "POST", "/api/projects", tokens["eve"], raw=raw)


def test_without_a_token_everything_is_403(api):
    for method, path in [("GET", "/api/projects"), ("GET", "/api/projects/vision")]:
        assert "authentication required" in message(api, method, path, None, expect=403)
    # without a token a POST is a cookie request, and those must carry the XSRF token
    assert "_xsrf" in message(api, "POST", "/api/projects", None, {"name": "x1"}, expect=403)
    status, _ = api.call("GET", "/api/openapi.yaml")
    assert status == 200


def test_roles_decide_who_sees_and_changes_what(api, tokens, vision, hub):
    # members see the project; a non-member learns only that it exists
    for who in ("lead", "viv", "ed"):
        assert api.call("GET", "/api/projects/vision", tokens[who])[1]["name"] == "vision"
    assert "not a member of vision" in message(api, "GET", "/api/projects/vision", tokens["eve"], expect=403)
    assert [p["name"] for p in api.call("GET", "/api/projects", tokens["eve"])[1]["projects"]] == []
    assert "no project named 'nope'" in message(api, "GET", "/api/projects/nope", tokens["eve"], expect=404)
    # members appear with their roles, and in the hub groups other components read
    _, project = api.call("GET", "/api/projects/vision", tokens["viv"])
    assert {(m["name"], m["role"]) for m in project["members"]} == {("lead", "maintainer"), ("viv", "viewer"),
                                                                    ("ed", "editor")}
    assert hub.api.request("GET", "hub/api/users/viv")["groups"] == ["project:vision:viewer"]
    # only maintainers (and admins) change membership, the description, or delete
    for who in ("viv", "ed", "eve"):
        assert message(api, "POST", "/api/projects/vision/members", tokens[who], {"name": "eve", "role": "viewer"},
                       expect=403)
        assert message(api, "PATCH", "/api/projects/vision/members/user/viv", tokens[who], {"role": "editor"},
                       expect=403)
        assert message(api, "DELETE", "/api/projects/vision/members/user/viv", tokens[who], expect=403)
        assert message(api, "PATCH", "/api/projects/vision", tokens[who], {"description": "x"}, expect=403)
        assert message(api, "DELETE", "/api/projects/vision", tokens[who], expect=403)
        assert message(api, "GET", "/api/projects/vision/audit", tokens["eve"], expect=403)
    assert "only maintainers" in message(api, "POST", "/api/projects/vision/members", tokens["ed"],
                                         {"name": "eve", "role": "viewer"}, expect=403)
    status, project = api.call("PATCH", "/api/projects/vision", tokens["lead"], {"description": "computer vision"})
    assert status == 200 and project["description"] == "computer vision"


def test_admins_see_every_project(api, tokens, vision):
    _, listed = api.call("GET", "/api/projects", tokens["root-admin"])
    assert [(p["name"], p["your_role"]) for p in listed["projects"]] == [("vision", None)]
    assert api.call("GET", "/api/projects/vision/audit", tokens["root-admin"])[0] == 200


def test_membership_validation_paths(api, tokens, vision):
    lead = tokens["lead"]
    members = "/api/projects/vision/members"
    assert "no hub user named 'zed'" in message(api, "POST", members, lead, {"name": "zed", "role": "viewer"})
    assert "no hub group named 'ghosts'" in message(api, "POST", members, lead,
                                                     {"kind": "group", "name": "ghosts", "role": "viewer"})
    assert "is a project group" in message(api, "POST", members, lead,
                                           {"kind": "group", "name": "project:vision:viewer", "role": "viewer"})
    assert "not a role" in message(api, "POST", members, lead, {"name": "eve", "role": "owner"})
    assert "not a member kind" in message(api, "POST", members, lead, {"kind": "team", "name": "eve", "role": "viewer"})
    assert "already a member" in message(api, "POST", members, lead, {"name": "viv", "role": "editor"}, expect=409)
    assert "no project named" in message(api, "POST", "/api/projects/nope/members", lead,
                                         {"name": "eve", "role": "viewer"}, expect=404)
    assert "not a member of vision" in message(api, "PATCH", f"{members}/user/eve", lead, {"role": "editor"},
                                               expect=404)
    assert "not a role" in message(api, "PATCH", f"{members}/user/viv", lead, {"role": "boss"})
    assert "not a member kind" in message(api, "DELETE", f"{members}/users/viv", lead)
    # a project always keeps a maintainer
    assert "no maintainer left" in message(api, "PATCH", f"{members}/user/lead", lead, {"role": "editor"}, expect=409)
    assert "no maintainer left" in message(api, "DELETE", f"{members}/user/lead", lead, expect=409)
    assert "already exists" in message(api, "POST", "/api/projects", tokens["eve"], {"name": "vision"}, expect=409)


def test_a_hub_group_can_be_a_member(api, tokens, vision, hub):
    status, project = api.call("POST", "/api/projects/vision/members", tokens["lead"],
                               {"kind": "group", "name": "ml-team", "role": "editor"})
    assert status == 201 and {"kind": "group", "name": "ml-team"}.items() <= project["members"][0].items()
    assert api.call("GET", "/api/projects/vision", tokens["ned"])[1]["your_role"] == "editor"
    assert "ned" in hub.api.request("GET", "hub/api/groups/project:vision:editor")["users"]
    assert api.call("DELETE", "/api/projects/vision/members/group/ml-team", tokens["lead"])[0] == 204
    assert "ned" not in hub.api.request("GET", "hub/api/groups/project:vision:editor")["users"]
    assert message(api, "GET", "/api/projects/vision", tokens["ned"], expect=403)


def test_membership_changes_are_audited(api, tokens, vision):
    lead = tokens["lead"]
    api.call("PATCH", "/api/projects/vision/members/user/viv", lead, {"role": "editor"})
    assert api.call("DELETE", "/api/projects/vision/members/user/viv", lead)[0] == 204
    assert message(api, "DELETE", "/api/projects/vision/members/user/viv", lead, expect=404)
    _, audit = api.call("GET", "/api/projects/vision/audit", tokens["ed"])
    recent = [(e["actor"], e["action"], e["subject"], e["role"], e["previous_role"]) for e in audit["entries"][:2]]
    assert recent == [("lead", "remove-member", "viv", "", "editor"), ("lead", "set-role", "viv", "editor", "viewer")]


def test_shared_server_paths(api, tokens, vision, hub):
    lead, ed = tokens["lead"], tokens["ed"]
    hub.spawn("ed", "exp")
    path = "/api/projects/vision/shared-servers"
    status, shared = api.call("POST", path, ed, {"server": "exp"})
    assert status == 201 and [(s["owner"], s["server"], s["url"]) for s in shared["servers"]] == [
        ("ed", "exp", "/user/ed/exp/")]
    assert message(api, "POST", path, ed, {"server": "nope"}, expect=404)
    assert message(api, "POST", path, ed, {"server": 3})
    assert message(api, "POST", path, tokens["eve"], {"server": ""}, expect=403)
    assert message(api, "GET", path, tokens["eve"], expect=403)
    assert message(api, "GET", "/api/projects/nope/shared-servers", ed, expect=404)
    assert "only ed" in message(api, "DELETE", f"{path}/ed/exp", lead, expect=403)
    assert message(api, "DELETE", f"{path}/ed", ed, expect=404)  # the default server is not shared
    assert api.call("DELETE", f"{path}/ed/exp", ed)[0] == 204
    assert message(api, "DELETE", f"{path}/ed/exp", ed, expect=404)
    assert api.call("POST", path, ed, {"server": ""})[0] == 201
    assert message(api, "DELETE", f"{path}/ed", tokens["viv"], expect=403)  # viv is no longer a member
    assert api.call("DELETE", f"{path}/ed", ed)[0] == 204
    assert api.call("GET", path, lead)[1] == {"servers": []}


def test_deleting_a_project(api, tokens, hub):
    eve = tokens["eve"]
    api.call("POST", "/api/projects", eve, {"name": "scratch"})
    assert message(api, "DELETE", "/api/projects/scratch", tokens["lead"], expect=403)
    assert message(api, "DELETE", "/api/projects/nope", eve, expect=404)
    assert message(api, "PATCH", "/api/projects/nope", eve, {"description": "x"}, expect=404)
    assert message(api, "PATCH", "/api/projects/scratch", eve, {"description": 5})
    assert message(api, "GET", "/api/projects/nope/audit", eve, expect=404)
    assert api.call("DELETE", "/api/projects/scratch", eve)[0] == 204
    assert message(api, "GET", "/api/projects/scratch", eve, expect=404)
    groups = [g["name"] for g in hub.api.request("GET", "hub/api/groups")]
    assert not [g for g in groups if g.startswith("project:scratch:")]


def test_deleting_a_name_again_and_again_is_never_a_500_and_leaves_nothing(api, tokens, hub):
    eve = tokens["eve"]
    for _ in range(2):  # re-created and deleted within the same second: the trash names once collided
        assert api.call("POST", "/api/projects", eve, {"name": "churn"})[0] == 201
        assert api.call("DELETE", "/api/projects/churn", eve)[0] == 204
    assert api.call("POST", "/api/projects", eve, {"name": "churn"})[0] == 201
    with ThreadPoolExecutor(4) as pool:  # deletes racing each other: one wins, the rest find nothing
        statuses = sorted(pool.map(lambda _: api.call("DELETE", "/api/projects/churn", eve)[0], range(4)))
    assert statuses == [204, 404, 404, 404]
    groups = [g["name"] for g in hub.api.request("GET", "hub/api/groups")]
    assert not [g for g in groups if g.startswith("project:churn:")]
    assert api.call("POST", "/api/projects", eve, {"name": "churn"})[0] == 201
    assert api.call("DELETE", "/api/projects/churn", eve)[0] == 204


def test_every_described_response_was_exercised(api):
    assert operations(api.spec) - api.seen == set()
