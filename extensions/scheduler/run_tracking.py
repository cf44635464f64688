"""A run's MLflow run, logged by the runner over MLflow's REST API with the standard library.

Importing the `mlflow` client costs over a second of CPU, more than the rest of a trivial
run's overhead, and the environment's Python need not have it. The runner needs six calls:
find or create the experiment, create the run, log parameters, metric and tags in one batch,
upload the executed notebook through the hub's artifact proxy, and end the run.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PARAM_VALUE_LIMIT = 500
ARTIFACT_SCHEME = "mlflow-artifacts"  # gpulab's MLflow always proxies artifacts (extensions/mlflow/app.py)
RUN_STATUS = {"COMPLETED": "FINISHED"}  # any other ending is an MLflow FAILED run


class MlflowError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.code = code


class MlflowRest:
    def __init__(self, tracking_uri: str, token: str, timeout: float = 60):
        self.base = tracking_uri.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    def _send(self, method: str, url: str, data: bytes | None, content_type: str) -> dict:
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={**self.headers, "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                details = json.loads(body)
            except ValueError:
                details = {"message": body.decode(errors="replace")[:300]}
            raise MlflowError(error.code, details.get("error_code", ""), details.get("message", "")) from None
        return json.loads(payload) if payload else {}

    def _api(self, method: str, endpoint: str, body: dict | None = None, query: dict | None = None) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return self._send(method, url, None if body is None else json.dumps(body).encode(), "application/json")

    def experiment_id(self, name: str) -> str:
        """The experiment called `name`, created when missing (another run may create it meanwhile)."""
        for _ in range(2):
            try:
                return self._api("GET", "experiments/get-by-name", query={"experiment_name": name})["experiment"][
                    "experiment_id"]
            except MlflowError as error:
                if error.code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            try:
                return self._api("POST", "experiments/create", {"name": name})["experiment_id"]
            except MlflowError as error:
                if error.code != "RESOURCE_ALREADY_EXISTS":
                    raise
        raise MlflowError(409, "RESOURCE_ALREADY_EXISTS", f"experiment {name!r} keeps appearing and vanishing")

    def create_run(self, experiment_id: str, run_name: str, start_ms: int, tags: dict) -> dict:
        """The new run's `info` (run_id, artifact_uri)."""
        body = {"experiment_id": experiment_id, "run_name": run_name, "start_time": start_ms,
                "tags": [{"key": k, "value": str(v)} for k, v in tags.items()]}
        return self._api("POST", "runs/create", body)["run"]["info"]

    def log_batch(self, run_id: str, params: dict, metrics: dict, tags: dict, timestamp_ms: int) -> None:
        self._api("POST", "runs/log-batch", {
            "run_id": run_id,
            "params": [{"key": k, "value": str(v)[:PARAM_VALUE_LIMIT]} for k, v in params.items()],
            "metrics": [{"key": k, "value": v, "timestamp": timestamp_ms, "step": 0} for k, v in metrics.items()],
            "tags": [{"key": k, "value": str(v)} for k, v in tags.items()]})

    def upload_artifact(self, artifact_uri: str, name: str, data: bytes) -> None:
        parsed = urllib.parse.urlparse(artifact_uri)
        if parsed.scheme != ARTIFACT_SCHEME:
            raise MlflowError(400, "UNSUPPORTED", f"artifacts go to {artifact_uri!r}, not through the proxy")
        path = urllib.parse.quote(f"{parsed.path.strip('/')}/{name}")
        self._send("PUT", f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{path}", data, "application/octet-stream")

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        self._api("POST", "runs/update", {"run_id": run_id, "status": status, "end_time": end_ms})


def log_run(client: MlflowRest, experiment: str, spec: dict, status: str, seconds: float,
            artifacts: list[tuple[str, Path]], metrics: dict | None = None, params: dict | None = None) -> str:
    """The gpulab run as an MLflow run of its experiment, with `artifacts` ((name, file) pairs:
    the executed notebook, a job's outputs/); returns the MLflow run's id."""
    now_ms = int(time.time() * 1000)
    info = client.create_run(client.experiment_id(experiment), spec["run_name"], now_ms - int(seconds * 1000),
                             {"mlflow.source.type": "JOB", "mlflow.source.name": spec["schedule"]})
    run_id = info["run_id"]
    try:
        client.log_batch(run_id, {**spec["parameters"], **(params or {})},
                         {"duration_seconds": seconds, **(metrics or {})},
                         {"gpulab.profile": spec["profile"], "gpulab.environment": spec["environment"],
                          "gpulab.status": status, "gpulab.kind": spec.get("kind", "notebook")}, now_ms)
        for name, path in artifacts:
            if path.exists():
                client.upload_artifact(info["artifact_uri"], name, path.read_bytes())
    finally:  # a half-logged run still ends rather than staying RUNNING forever
        client.end_run(run_id, RUN_STATUS.get(status, "FAILED"), int(time.time() * 1000))
    return run_id
