"""`POST /gpulab/jobs` in a user's server (what JupyterLab's "Run as a gpulab job…" calls), against
a real hub, the user's real server and the central scheduler: a script of the server runs as a
job with the CLI's request; a path that is not one of its .py files, and the central scheduler's
refusals, come back as 4xx with the reason."""

from __future__ import annotations

import pytest

from gpulab.hub_config.client import ClientError, HubClient
from tests.support.scheduler_runs import wait_run


USER = "lab-jobber"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"mlflow": {"enabled": False}, "ssh": {"enabled": False}})


@pytest.fixture(scope="module")
def user(hub) -> HubClient:
    """The user, their server running, with a script in a folder of their home."""
    hub.create_user(USER)
    hub.spawn(USER)
    client = HubClient(hub.url, hub.user_token(USER))
    for path, content in (("work/train.py", "import sys, os\nprint('args', sys.argv[1:], os.path.exists('data.txt'))\n"),
                          ("work/data.txt", "x\n"), ("notes.txt", "not a script\n")):
        if path.startswith("work/"):
            client.request("PUT", f"user/{USER}/api/contents/work", {"type": "directory"})
        client.request("PUT", f"user/{USER}/api/contents/{path}", {"type": "file", "format": "text", "content": content})
    return client


def submit(client: HubClient, **body) -> dict:
    return client.request("POST", f"user/{USER}/gpulab/jobs", body)


def refused(client: HubClient, **body) -> ClientError:
    with pytest.raises(ClientError) as error:
        submit(client, **body)
    return error.value


def test_a_script_runs_as_a_job_in_a_snapshot_of_its_folder(user):
    run = submit(user, path="work/train.py", arguments="--lr 0.01 --note 'two words'")
    assert run["command"] == ["python", "train.py", "--lr", "0.01", "--note", "two words"]
    assert run["links"]["runs"] == "/services/scheduler/" and run["profile"] == "cpu"
    ended = wait_run(user, run["id"])
    assert (ended["status"], ended["kind"], ended["schedule_name"]) == ("COMPLETED", "script", "train"), ended
    log = user.request("GET", f"user/{USER}/gpulab/jobs/{run['id']}/log")  # the Lab panel follows it here
    assert log["ended"] and "args ['--lr', '0.01', '--note', 'two words'] True" in log["text"], log


def test_the_dialog_offers_the_hubs_profiles(user):
    assert user.request("GET", f"user/{USER}/gpulab/jobs/profiles") == {
        "profiles": [{"id": "cpu", "display_name": "CPU", "default": True}]}


@pytest.mark.parametrize("body, status, message", [
    ({"path": "../../../etc/passwd"}, 400, "is outside the server's folder"),
    ({"path": "/etc/hostname"}, 400, "is outside the server's folder"),
    ({"path": "missing.py"}, 404, "no such file: 'missing.py'"),
    ({"path": "notes.txt"}, 400, "'notes.txt' is not a Python script (.py)"),
    ({"path": "work"}, 400, "'work' is not a Python script (.py)"),
    ({"path": "work/train.py", "arguments": "'unclosed"}, 400, "arguments: No closing quotation"),
    ({"path": "work/train.py", "colour": "red"}, 400, "colour: Extra inputs are not permitted"),
    ({}, 400, "path: Field required"),
    # the central scheduler's refusal, forwarded as it came
    ({"path": "work/train.py", "profile": "gpu-9"}, 400, "unknown profile 'gpu-9'"),
])
def test_refusals_are_4xx_with_the_reason(user, body, status, message):
    error = refused(user, **body)
    assert error.status == status and message in error.message, (error.status, error.message)


def test_another_users_token_cannot_submit_in_this_server(hub, user):
    hub.create_user("lab-stranger")
    stranger = HubClient(hub.url, hub.user_token("lab-stranger"))
    error = refused(stranger, path="work/train.py")
    assert error.status in (403, 404), (error.status, error.message)
