"""JupyterLab's scheduler (jupyter-scheduler's REST API in the user's server) forwards to the central service."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulab.hub_config.client import ClientError, HubClient
from tests.support.hub import wait_for
from tests.support.scheduler_runs import notebook, outputs_text, wait_run
from tests.support.warm_servers import account


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start()
    hub.create_user("labby")
    hub.spawn("labby")
    return hub


@pytest.fixture(scope="module")
def labby(hub) -> HubClient:
    return HubClient(hub.url, hub.user_token("labby"))


def test_a_job_created_in_the_users_server_runs_centrally(hub, labby):
    labby.request("PUT", "user/labby/api/contents/analysis.ipynb",
                  {"type": "notebook", "format": "json",
                   "content": notebook("print('alpha is', alpha)", parameters="alpha = 0")})
    environments = labby.request("GET", "user/labby/scheduler/runtime_environments")
    assert [e["name"] for e in environments] == ["cpu"] and environments[0]["compute_types"] == ["cpu"]
    job = labby.request("POST", "user/labby/scheduler/jobs", {
        "name": "from lab", "input_uri": "analysis.ipynb", "runtime_environment_name": "cpu",
        "compute_type": "cpu", "parameters": {"alpha": "0.5"}, "output_formats": ["ipynb", "html"]})
    described = wait_for(lambda: (j := labby.request("GET", f"user/labby/scheduler/jobs/{job['job_id']}"))["status"]
                         in ("COMPLETED", "FAILED") and j, 120, "the job to finish")
    assert described["status"] == "COMPLETED", described
    run = wait_run(labby, job["job_id"])  # the same run, seen in the central service
    executed = labby.request("GET", f"services/scheduler/api/runs/{run['id']}/files/output.ipynb")
    assert "alpha is 0.5" in outputs_text(executed)  # "0.5" from the UI arrives as a number
    labby.request("GET", f"user/labby/scheduler/jobs/{job['job_id']}/download_files")
    # jupyter-scheduler copies the files in a process of its own after answering 204: wait for them

    def downloaded_formats():
        try:
            folder = labby.request("GET", "user/labby/api/contents/jobs")
            downloaded = labby.request("GET", f"user/labby/api/contents/{folder['content'][0]['path']}")
        except (ClientError, IndexError):
            return None
        formats = {f["name"].rsplit(".", 1)[1] for f in downloaded["content"]}
        return formats >= {"ipynb", "html"} and formats

    wait_for(downloaded_formats, 60, "the run's files in the server's jobs folder")
    # jobs are the central service's: jupyter-scheduler's own database is never made in the home
    assert not list(Path(account(hub, "labby").pw_dir).rglob("scheduler.sqlite*"))


@pytest.mark.parametrize("path, body, message", [
    ("jobs", {"name": "x", "input_uri": "missing.ipynb", "runtime_environment_name": "cpu"},
     "notebook 'missing.ipynb' does not exist"),
    ("job_definitions", {"name": "x", "input_uri": "analysis.ipynb", "runtime_environment_name": "cpu",
                         "schedule": "every morning"}, "invalid cron expression"),
    ("jobs", {"name": "x", "input_uri": "analysis.ipynb", "runtime_environment_name": "cpu",
              "compute_type": "gpu-9"}, "unknown profile 'gpu-9'"),
])
def test_refusals_are_4xx_with_the_reason_not_500(hub, labby, path, body, message):
    with pytest.raises(ClientError) as refused:
        labby.request("POST", f"user/labby/scheduler/{path}", body)
    assert refused.value.status == 400 and message in refused.value.message, refused.value.message


def test_schedules_created_in_lab_are_job_definitions_there(hub, labby):
    created = labby.request("POST", "user/labby/scheduler/job_definitions", {
        "name": "daily", "input_uri": "analysis.ipynb", "runtime_environment_name": "cpu", "compute_type": "cpu",
        "schedule": "0 6 * * *", "timezone": "Europe/Paris"})
    definitions = labby.request("GET", "user/labby/scheduler/job_definitions")["job_definitions"]
    assert [(d["name"], d["schedule"], d["timezone"], d["active"]) for d in definitions] == \
        [("daily", "0 6 * * *", "Europe/Paris", True)]
    labby.request("PATCH", f"user/labby/scheduler/job_definitions/{created['job_definition_id']}", {"active": False})
    assert labby.request("GET", f"services/scheduler/api/schedules/{created['job_definition_id']}")["active"] is False
