"""MLflow on the hub, end to end: a real hub, its real MLflow service, real user servers and the
real `mlflow` client.

The first test runs the client inside alice's server (a kernel started through the hub), so
it uses exactly the environment gpulab gives servers. The permission tests call the service
with the real client and with plain REST from this process, holding each user's hub token.
What this does not cover: PostgreSQL and S3 stores (see test_mlflow_stores.py for S3).
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from gpulab.extensions.mlflow.naming import PROJECT_TAG
from gpulab.hub_config.client import HubClient
from tests.support.hub import wait_for
from tests.support.kernels import run_in_kernel
from tests.support.projects import API as PROJECTS
from tests.support.projects import create_project, project_settings


pytestmark = pytest.mark.root

USERS = ["alice", "bob", "vic", "eddie", "mia"]
VISION = {"vic": "viewer", "eddie": "editor"}  # and mia, who creates it, is its maintainer

IN_SERVER = """
import json, os
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric

mlflow.set_experiment("alice-baseline")
with mlflow.start_run() as run:
    mlflow.log_param("lr", 0.01)
    mlflow.log_metric("loss", 0.5, step=1)
    mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=1)
    MlflowClient().log_batch(run.info.run_id, metrics=[Metric("batch_loss", i / 10, 0, i) for i in range(100)])
    os.makedirs("out", exist_ok=True)
    open("out/model.txt", "w").write("weights")
    mlflow.log_artifact("out/model.txt", "model")
run = mlflow.get_run(run.info.run_id)
client = MlflowClient()
print(json.dumps({
    "environment": {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME") if k in os.environ},
    "has_token": bool(os.environ.get("MLFLOW_TRACKING_TOKEN")),
    "account": os.environ["USER"],
    "experiment_id": run.info.experiment_id,
    "run_id": run.info.run_id,
    "user_id": run.info.user_id,
    "user_tag": run.data.tags.get("mlflow.user"),
    "params": run.data.params,
    "metrics": run.data.metrics,
    "batch_history": len(client.get_metric_history(run.info.run_id, "batch_loss")),
    "artifacts": [f.path for f in client.list_artifacts(run.info.run_id, "model")],
    "artifact": open(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model/model.txt")).read(),
}))
"""


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    hub = module_hub_factory.start({**project_settings(projects_root, account_prefix, "m"),
                                    "mlflow": {"cache_seconds": 1}})
    for name in USERS:
        hub.create_user(name)
    create_project(hub, "mia", "vision", VISION)
    return hub


@pytest.fixture(scope="module")
def tokens(hub):
    return {name: hub.user_token(name) for name in USERS}


@pytest.fixture(scope="module")
def mlflow_url(hub):
    return hub.url + "services/mlflow"


def client_as(monkeypatch, url: str, token: str) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    return MlflowClient(url)


def rest(url: str, token: str | None, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{url}/api/2.0/mlflow/{path}", headers=headers, allow_redirects=False, **kwargs)


def status_of(error: MlflowException) -> int:
    return error.get_http_status_code()


@pytest.fixture(scope="module")
def alice_run(hub, tokens):
    hub.spawn("alice")
    output = run_in_kernel(hub, "alice", IN_SERVER, tokens["alice"])
    # the artifact download's progress bar (stderr, same stream here) ends without a newline
    return json.loads(output[output.rindex('{"environment"'):])


def test_a_notebook_logs_with_no_setup_and_the_run_is_the_hub_users(hub, alice_run):
    assert alice_run["environment"] == {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{hub.ports['hub'] + 2}/services/mlflow",
        "MLFLOW_EXPERIMENT_NAME": "Default (alice)",
    }
    assert alice_run["has_token"]
    assert alice_run["account"] != "alice"  # the system account differs; the run's user does not
    assert alice_run["user_id"] == "alice" and alice_run["user_tag"] == "alice"
    assert alice_run["params"] == {"lr": "0.01"}
    assert alice_run["metrics"]["loss"] == 0.5 and alice_run["metrics"]["acc"] == 0.9
    assert alice_run["batch_history"] == 100
    assert alice_run["artifacts"] == ["model/model.txt"]
    assert alice_run["artifact"] == "weights"


def test_runs_without_an_experiment_go_to_the_users_own_default(hub, tokens, alice_run):
    code = "import mlflow\nwith mlflow.start_run() as run: mlflow.log_metric('x', 1)\n" \
           "print(mlflow.get_experiment(run.info.experiment_id).name)"
    assert run_in_kernel(hub, "alice", code, tokens["alice"]).strip() == "Default (alice)"


def test_another_user_cannot_read_a_private_experiment(monkeypatch, mlflow_url, tokens, alice_run):
    bob = client_as(monkeypatch, mlflow_url, tokens["bob"])
    with pytest.raises(MlflowException) as refused:
        bob.get_experiment(alice_run["experiment_id"])
    assert status_of(refused.value) == 403
    with pytest.raises(MlflowException) as refused:
        bob.get_run(alice_run["run_id"])
    assert status_of(refused.value) == 403
    with pytest.raises(MlflowException) as refused:
        bob.log_metric(alice_run["run_id"], "sabotage", 1.0)
    assert status_of(refused.value) == 403
    assert alice_run["experiment_id"] not in [e.experiment_id for e in bob.search_experiments()]

    experiment = rest(mlflow_url, tokens["bob"], "GET", "experiments/get", params={"experiment_id": alice_run["experiment_id"]})
    artifact = requests.get(f"{mlflow_url}/get-artifact", params={"run_id": alice_run["run_id"], "path": "model/model.txt"},
                            headers={"Authorization": f"Bearer {tokens['bob']}"})
    assert (experiment.status_code, artifact.status_code) == (403, 403)
    assert rest(mlflow_url, tokens["alice"], "GET", "experiments/get",
                params={"experiment_id": alice_run["experiment_id"]}).status_code == 200


def test_requests_without_a_valid_hub_token_are_401(mlflow_url):
    anonymous = rest(mlflow_url, None, "GET", "experiments/search", params={"max_results": 1})
    forged = rest(mlflow_url, "not-a-hub-token", "GET", "experiments/search", params={"max_results": 1})
    assert (anonymous.status_code, forged.status_code) == (401, 401)
    assert "hub" in forged.json()["message"]


def test_a_project_viewer_reads_but_cannot_log_and_an_editor_can(monkeypatch, mlflow_url, tokens):
    mia = client_as(monkeypatch, mlflow_url, tokens["mia"])
    experiment_id = mia.create_experiment(f"vision/sweep-{uuid.uuid4().hex[:6]}")
    assert mia.get_experiment(experiment_id).tags[PROJECT_TAG] == "vision"
    run_id = mia.create_run(experiment_id).info.run_id

    vic = client_as(monkeypatch, mlflow_url, tokens["vic"])
    assert vic.get_run(run_id).info.experiment_id == experiment_id
    with pytest.raises(MlflowException) as refused:
        vic.create_run(experiment_id)
    assert status_of(refused.value) == 403
    with pytest.raises(MlflowException) as refused:
        vic.log_batch(run_id, metrics=[Metric("loss", 0.1, 0, 0)])
    assert status_of(refused.value) == 403

    eddie = client_as(monkeypatch, mlflow_url, tokens["eddie"])
    eddie_run = eddie.create_run(experiment_id).info.run_id
    eddie.log_batch(eddie_run, metrics=[Metric("loss", 0.1, 0, 0)], params=[Param("depth", "50")])
    assert eddie.get_run(eddie_run).info.user_id == "eddie"
    with pytest.raises(MlflowException) as refused:
        eddie.delete_experiment(experiment_id)  # deleting is the maintainers'
    assert status_of(refused.value) == 403

    bob = client_as(monkeypatch, mlflow_url, tokens["bob"])
    with pytest.raises(MlflowException) as refused:
        bob.get_experiment(experiment_id)
    assert status_of(refused.value) == 403


def test_creating_a_project_experiment_needs_the_editor_role(mlflow_url, tokens):
    for user, role in (("bob", "no role"), ("vic", "the viewer role")):
        response = rest(mlflow_url, tokens[user], "POST", "experiments/create", json={"name": f"vision/{user}-try"})
        assert response.status_code == 403
        assert f"you have {role}" in response.json()["message"]
    # A slashed name whose first part is no project is just a private experiment.
    response = rest(mlflow_url, tokens["bob"], "POST", "experiments/create", json={"name": f"notes/{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 200


def test_a_membership_change_in_the_project_applies(hub, monkeypatch, mlflow_url, tokens):
    mia = client_as(monkeypatch, mlflow_url, tokens["mia"])
    experiment_id = mia.create_experiment(f"vision/late-{uuid.uuid4().hex[:6]}")
    assert rest(mlflow_url, tokens["bob"], "GET", "experiments/get", params={"experiment_id": experiment_id}).status_code == 403
    lead = HubClient(hub.url, tokens["mia"])
    lead.request("POST", f"{PROJECTS}/vision/members", {"name": "bob", "role": "viewer"})
    try:
        wait_for(lambda: rest(mlflow_url, tokens["bob"], "GET", "experiments/get",
                              params={"experiment_id": experiment_id}).status_code == 200, 30, "bob's new role to apply")
    finally:
        lead.request("DELETE", f"{PROJECTS}/vision/members/user/bob")
    wait_for(lambda: rest(mlflow_url, tokens["bob"], "GET", "experiments/get",
                          params={"experiment_id": experiment_id}).status_code == 403, 30, "bob's role to be gone")


def test_names_and_project_tags_cannot_be_taken(monkeypatch, mlflow_url, tokens):
    taken = rest(mlflow_url, tokens["bob"], "POST", "experiments/create", json={"name": "Default (alice)"})
    assert taken.status_code == 403 and "reserved for alice" in taken.json()["message"]
    smuggled = rest(mlflow_url, tokens["bob"], "POST", "experiments/create",
                    json={"name": f"bob-{uuid.uuid4().hex[:6]}", "tags": [{"key": PROJECT_TAG, "value": "vision"}]})
    assert smuggled.status_code == 403

    mia = client_as(monkeypatch, mlflow_url, tokens["mia"])
    private = mia.create_experiment(f"mia-{uuid.uuid4().hex[:6]}")
    moved = rest(mlflow_url, tokens["mia"], "POST", "experiments/update",
                 json={"experiment_id": private, "new_name": f"vision/moved-{uuid.uuid4().hex[:6]}"})
    assert moved.status_code == 400 and "cannot change hands" in moved.json()["message"]
    retagged = rest(mlflow_url, tokens["mia"], "POST", "experiments/set-experiment-tag",
                    json={"experiment_id": private, "key": PROJECT_TAG, "value": "vision"})
    assert retagged.status_code == 403
    renamed = rest(mlflow_url, tokens["mia"], "POST", "experiments/update",
                   json={"experiment_id": private, "new_name": f"mia-renamed-{uuid.uuid4().hex[:6]}"})
    assert renamed.status_code == 200


def test_the_assistant_that_trusts_loopback_is_off(mlflow_url, tokens):
    response = requests.get(f"{mlflow_url}/ajax-api/3.0/mlflow/assistant/config",
                            headers={"Authorization": f"Bearer {tokens['alice']}"})
    assert response.status_code == 404


def test_the_ui_page_needs_a_hub_session(mlflow_url, tokens):
    page = requests.get(mlflow_url + "/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert page.status_code == 302
    assert "/hub/api/oauth2/authorize" in page.headers["Location"]
    assert "code_challenge" in page.headers["Location"]
    with_token = requests.get(mlflow_url + "/", headers={"Authorization": f"Bearer {tokens['alice']}"})
    assert with_token.status_code == 200 and "<title>MLflow</title>" in with_token.text


def test_the_jupyterlab_launcher_offers_mlflow_and_tensorboard(hub, tokens, alice_run):
    info = requests.get(hub.url + "user/alice/server-proxy/servers-info",
                        headers={"Authorization": f"token {tokens['alice']}"}).json()
    entries = {item["name"]: item["launcher_entry"] for item in info["server_processes"]}
    assert entries["mlflow"]["path_info"] == "../../services/mlflow/" and entries["mlflow"]["enabled"]
    assert entries["tensorboard"]["path_info"] == "tensorboard/" and entries["tensorboard"]["enabled"]
    icon = requests.get(hub.url + entries["mlflow"]["icon_url"].lstrip("/"), headers={"Authorization": f"token {tokens['alice']}"})
    assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg+xml")
