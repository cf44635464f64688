"""JupyterLab's scheduler API in a user's server: what jupyter-scheduler answers with a 500 is a 4xx here."""

from __future__ import annotations

import os
import pwd

import pytest

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name
from tests.support.scheduler_runs import notebook, wait_run


USER = "lab-refusals"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start({"mlflow": {"enabled": False}, "ssh": {"enabled": False}})
    hub.create_user(USER)
    hub.spawn(USER)
    return hub


@pytest.fixture(scope="module")
def user(hub) -> HubClient:
    client = HubClient(hub.url, hub.user_token(USER))
    client.request("PUT", f"user/{USER}/api/contents/ok.ipynb",
                   {"type": "notebook", "format": "json", "content": notebook("print(when)", parameters="when = ''")})
    return client


def job(input_uri: str, **fields) -> dict:
    return {"name": "x", "input_uri": input_uri, "runtime_environment_name": "cpu", **fields}


def refused(client: HubClient, method: str, path: str, body=None) -> ClientError:
    with pytest.raises(ClientError) as error:
        client.request(method, f"user/{USER}/scheduler/{path}", body)
    return error.value


@pytest.mark.parametrize("method, path, body, message", [
    ("GET", "jobs?status=BOGUS", None, "status='BOGUS': expected"),
    ("GET", "jobs/count?status=xx", None, "status='xx': expected"),
    ("GET", "jobs?max_items=many", None, "max_items='many': expected an integer"),
    ("POST", "jobs", job("a" * 5000 + ".ipynb"), "does not exist"),
    ("POST", "jobs", job("../../../etc/passwd"), "does not exist"),
    ("POST", "jobs", job("ok.ipynb", parameters={"x": "nan"}), "JSON has no NaN"),
    ("POST", "jobs", {"name": "x"}, "input_uri"),
])
def test_bad_requests_are_400_with_the_reason(user, method, path, body, message):
    error = refused(user, method, path, body)
    assert error.status == 400 and message in error.message, (error.status, error.message)


@pytest.mark.root
def test_an_unreadable_notebook_is_400(hub, user):
    local = hub.settings["spawner"]["local"]
    home = pwd.getpwnam(account_name(USER, local["account_prefix"])).pw_dir
    with open(os.path.join(home, "locked.ipynb"), "w") as locked:  # root's, mode 0600: the user cannot read it
        locked.write("{}")
    os.chmod(os.path.join(home, "locked.ipynb"), 0o600)
    error = refused(user, "POST", "jobs", job("locked.ipynb"))
    assert error.status == 400 and "cannot read 'locked.ipynb'" in error.message, error.message


def test_a_date_like_parameter_runs_as_a_string_as_with_papermill(user):
    created = user.request("POST", f"user/{USER}/scheduler/jobs", job("ok.ipynb", parameters={"when": "2024-01-01"}))
    done = wait_run(user, created["job_id"])
    assert done["status"] == "COMPLETED" and done["parameters"] == {"when": "2024-01-01"}, done
