"""`gpulab project ...` against a real hub: from a laptop's shell (GPULAB_URL + GPULAB_TOKEN) and
from a terminal inside a user's server (the hub sets GPULAB_URL and JUPYTERHUB_API_TOKEN)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.hub import GPULAB
from tests.support.kernels import Kernel
from tests.support.projects import project_settings


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    hub = module_hub_factory.start(project_settings(projects_root, account_prefix, "c"))
    for name in ("lead", "ana", "bo"):
        hub.create_user(name)
    hub.api.request("POST", "hub/api/groups/annotators", {"users": ["bo"]})
    return hub


def gpulab(hub, user: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": hub.user_token(user)}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    return subprocess.run([GPULAB, "project", *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_team_lead_manages_a_project_from_the_command_line(hub):
    created = gpulab(hub, "lead", "create", "nlp", "--description", "language models")
    assert created.returncode == 0, created.stderr
    assert "created nlp; its folder is ~/projects/nlp" in created.stdout
    assert gpulab(hub, "lead", "add-member", "nlp", "ana", "--role", "viewer").returncode == 0
    assert gpulab(hub, "lead", "add-member", "nlp", "annotators", "--group").returncode == 0
    assert gpulab(hub, "lead", "set-role", "nlp", "ana", "editor").returncode == 0
    shown = gpulab(hub, "ana", "show", "nlp")
    assert shown.returncode == 0, shown.stderr
    assert "    ana: editor" in shown.stdout and "    annotators (group): editor" in shown.stdout
    listed = gpulab(hub, "bo", "list", "--json")
    assert [(p["name"], p["your_role"]) for p in json.loads(listed.stdout)["projects"]] == [("nlp", "editor")]
    assert gpulab(hub, "lead", "list").stdout.splitlines()[1].split()[:3] == ["nlp", "maintainer", "3"]
    assert gpulab(hub, "lead", "remove-member", "nlp", "annotators", "--group").returncode == 0
    assert gpulab(hub, "bo", "list").stdout.strip() == "no projects"
    assert gpulab(hub, "lead", "delete", "nlp").stdout.strip() == "deleted nlp"


@pytest.mark.parametrize("user, args, code, needle", [
    ("lead", ("create", "Bad/Name"), 2, "must not contain '/'"),
    ("lead", ("add-member", "ghost-project", "ana"), 1, "no project named 'ghost-project'"),
    ("ana", ("delete", "guarded"), 1, "only maintainers of guarded may delete it"),
    ("lead", ("add-member", "guarded", "nobody-here"), 2, "no hub user named 'nobody-here'"),
    ("lead", ("create", "guarded"), 1, "already exists"),
])
def test_refusals_exit_non_zero_with_the_reason(hub, user, args, code, needle):
    if gpulab(hub, "lead", "show", "guarded").returncode != 0:
        gpulab(hub, "lead", "create", "guarded")
        gpulab(hub, "lead", "add-member", "guarded", "ana", "--role", "editor")
    result = gpulab(hub, user, *args)
    assert (result.returncode, result.stdout) == (code, "")
    assert needle in result.stderr


def test_usage_errors_and_a_missing_hub_address_are_explained(hub, tmp_path):
    assert gpulab(hub, "lead", "set-role", "guarded", "ana", "boss").returncode == 2  # argparse: not a role
    env = {k: v for k, v in os.environ.items() if k not in ("GPULAB_URL", "GPULAB_TOKEN", "JUPYTERHUB_API_TOKEN")}
    result = subprocess.run([GPULAB, "project", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1 and "set GPULAB_URL" in result.stderr


def test_the_command_works_in_a_terminal_of_a_user_server(hub):
    token = hub.user_token("ana")
    hub.spawn("ana")
    out = Kernel(hub.url, "ana", token).run(
        "import subprocess; r = subprocess.run(['gpulab', 'project', 'create', 'from-lab'], "
        "capture_output=True, text=True); print(r.returncode, r.stdout, r.stderr)")
    assert out.startswith("0 created from-lab"), out
    assert "from-lab" in gpulab(hub, "ana", "list").stdout
