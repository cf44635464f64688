"""gpulab's MLflow next to stock `mlflow server`: the same calls give the same outcome, the same
bytes and the same errors.

A real hub's MLflow service, and stock `mlflow server` started on the options gpulab's service
stands for (`server_arguments`: MLflow's basic-auth app, gpulab's default permission) with its
own empty store. Each call goes to both, as the same non-admin user (a hub token on gpulab's
side, a password on the other), with bodies that already name that user as the run's (what
gpulab's hooks would set); ids and times are the only things told apart (in JSON strings).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import uuid

import pytest
import requests

from gpulab.extensions.mlflow.app import server_arguments
from gpulab.extensions.mlflow.service_settings import MlflowServiceSettings
from tests.support.hub import wait_for
from tests.support.ports import free_port_block

pytestmark = pytest.mark.root

USER = "parity"
PREFIX = "/services/mlflow"
START = 1_700_000_000_000
MISSING_RUN = "0" * 32
MILLISECONDS = re.compile(rb"(?<!\d)1\d{12}(?!\d)")
JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


@pytest.fixture(scope="module")
def gpulab(module_hub_factory):
    hub = module_hub_factory.start({})
    hub.create_user(USER)
    return hub.url.rstrip("/") + PREFIX, {"Authorization": f"Bearer {hub.user_token(USER)}"}


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """`mlflow server` on `server_arguments`, with MLflow's basic-auth app as it comes (passwords,
    gpulab's default permission), and USER made by its admin."""
    folder = tmp_path_factory.mktemp("stock-mlflow")
    port = free_port_block(1)
    values = MlflowServiceSettings(backend_store_uri=f"sqlite:///{folder / 'mlflow.sqlite'}",
                                   artifacts_destination=str(folder / "artifacts"), static_prefix=PREFIX)
    (folder / "auth.ini").write_text("\n".join([
        "[mlflow]", "default_permission = NO_PERMISSIONS", f"database_uri = sqlite:///{folder / 'auth.sqlite'}",
        "admin_username = admin", "grant_default_workspace_access = false", ""]))
    admin_password, password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {key: value for key, value in os.environ.items() if "MLFLOW" not in key}
    env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true",
               MLFLOW_AUTH_CONFIG_PATH=str(folder / "auth.ini"), MLFLOW_AUTH_ADMIN_PASSWORD=admin_password,
               MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32))
    with open(folder / "log.txt", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", *server_arguments(values, "127.0.0.1", port)],
                                  env=env, cwd=folder, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}{PREFIX}"
    try:
        wait_for(lambda: healthy(url) or server.poll() is not None, 120, f"mlflow server (log: {folder / 'log.txt'})")
        assert server.poll() is None, (folder / "log.txt").read_text()
        made = requests.post(f"{url}/api/2.0/mlflow/users/create", json={"username": USER, "password": password},
                             headers=basic("admin", admin_password), timeout=30)
        assert made.status_code == 200, made.text
        yield url, basic(USER, password)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Both:
    """Sends each call to gpulab's MLflow and to the bare one; ids found in answers are
    replaced by a name for the comparison."""

    def __init__(self, gpulab: tuple[str, dict], stock: tuple[str, dict]) -> None:
        self.targets = {"gpulab": gpulab, "stock": stock}
        self.names: dict[str, dict[str, str]] = {"gpulab": {}, "stock": {}}

    def call(self, method: str, path: str, params: dict | None = None, body: dict | None = None,
             name_ids: dict[str, str] | None = None) -> dict[str, requests.Response]:
        answers = {}
        for side, (url, headers) in self.targets.items():
            answers[side] = requests.request(method, f"{url}/api/2.0/mlflow/{path}", headers=headers,
                                             params=self.fill(side, params), json=self.fill(side, body), timeout=30)
            if answers[side].status_code == 200:
                for placeholder, key in (name_ids or {}).items():
                    self.names[side][placeholder] = find(answers[side].json(), key)
        return answers

    def fill(self, side: str, values: dict | None) -> dict | None:
        """`{run}` in a value is this side's id of what was named "run"."""
        if values is None:
            return None
        return {key: value.format(**self.names[side]) if isinstance(value, str) else value
                for key, value in values.items()}

    def same(self, answers: dict[str, requests.Response]) -> tuple[int, bytes]:
        shown = {}
        for side, answer in answers.items():
            body = JSON_STRING.sub(lambda string: self.named(side, string.group()), answer.content)
            shown[side] = (answer.status_code, answer.headers.get("Content-Type"), body)
        assert shown["gpulab"] == shown["stock"]
        return shown["gpulab"][0], shown["gpulab"][2]

    def named(self, side: str, string: bytes) -> bytes:
        """A JSON string with this side's ids (whole, or a path segment) replaced by their names,
        and times in milliseconds (an error quoting the row it could not insert) by <time>."""
        for placeholder, value in sorted(self.names[side].items(), key=lambda item: -len(item[1])):
            string = re.sub(rb"(?<![\w-])" + re.escape(value.encode()) + rb"(?![\w-])", f"<{placeholder}>".encode(), string)
        return MILLISECONDS.sub(b"<time>", string)


def find(document, key: str) -> str:
    """The first value of `key` anywhere in a JSON document."""
    if isinstance(document, dict):
        if key in document:
            return str(document[key])
        document = list(document.values())
    if isinstance(document, list):
        for item in document:
            found = find(item, key)
            if found:
                return found
    return ""


@pytest.fixture(scope="module")
def both(gpulab, stock):
    return Both(gpulab, stock)


def test_creating_an_experiment(both):
    name = f"parity-{uuid.uuid4().hex[:8]}"
    both.names["gpulab"]["experiment_name"] = both.names["stock"]["experiment_name"] = name
    status, body = both.same(both.call("POST", "experiments/create", body={"name": name, "tags": [{"key": "team", "value": "a"}]},
                                       name_ids={"experiment": "experiment_id"}))
    assert status == 200 and json.loads(body) == {"experiment_id": "<experiment>"}


def test_a_run_its_metrics_and_params_read_back_the_same(both):
    # user_id and the mlflow.user tag (last) as gpulab's hooks set them for the hub user
    created = both.call("POST", "runs/create", body={
        "experiment_id": "{experiment}", "start_time": START, "run_name": "parity-run", "user_id": USER,
        "tags": [{"key": "stage", "value": "test"}, {"key": "mlflow.user", "value": USER}],
    }, name_ids={"run": "run_id"})
    assert both.same(created)[0] == 200
    for path, body in (("runs/log-metric", {"run_id": "{run}", "key": "loss", "value": 0.25, "timestamp": START + 1, "step": 3}),
                       ("runs/log-parameter", {"run_id": "{run}", "key": "lr", "value": "0.01"}),
                       ("runs/log-batch", {"run_id": "{run}", "metrics": [{"key": "acc", "value": 0.5, "timestamp": START + 2, "step": 1}]})):
        status, answer = both.same(both.call("POST", path, body=body))
        assert (status, json.loads(answer)) == (200, {})
    status, run = both.same(both.call("GET", "runs/get", params={"run_id": "{run}"}))
    info, data = json.loads(run)["run"]["info"], json.loads(run)["run"]["data"]
    assert status == 200 and info["artifact_uri"] == "mlflow-artifacts:/<experiment>/<run>/artifacts"
    assert {m["key"]: m["value"] for m in data["metrics"]} == {"loss": 0.25, "acc": 0.5}
    history = both.call("GET", "metrics/get-history", params={"run_id": "{run}", "metric_key": "loss"})
    assert both.same(history)[0] == 200


# MLflow's basic-auth app answers 403 for what the user could not read even if it existed, so a
# missing run is not told apart from someone else's (on both sides).
@pytest.mark.parametrize("method, path, params, body, status", [
    ("GET", "runs/get", {"run_id": MISSING_RUN}, None, 403),
    ("GET", "experiments/get", {"experiment_id": "not-a-number"}, None, 403),
    ("POST", "runs/log-metric", None, {"run_id": "{run}", "key": "loss", "value": "not a number", "timestamp": START}, 400),
    ("POST", "experiments/create", None, {}, 400),
    ("POST", "experiments/create", None, {"name": "{experiment_name}"}, 400),
])
def test_the_same_errors(both, method, path, params, body, status):
    assert both.same(both.call(method, path, params=params, body=body))[0] == status
