"""gpulab's MLflow service is `mlflow server` on `server_arguments`, in one process: MLflow's own
CLI, run on those options (its worker's start captured instead of run), hands its worker the
variables gpulab sets for MLflow's server modules, and no others.
(Side by side with a running `mlflow server`: tests/hub/extensions/mlflow/test_mlflow_parity.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gpulab.extensions.mlflow.access import BOOTSTRAP_ADMIN
from gpulab.extensions.mlflow.app import auth_config_text, mlflow_environment, server_arguments, worker_environment
from gpulab.extensions.mlflow.service_settings import MlflowServiceSettings

# What `mlflow server` sets only because it is a supervisor of other processes: an id for this
# generation of workers (for the sandboxes of GenAI jobs, off here), and "the supervisor already
# made the admin user" (gpulab's one process makes it itself, as MLflow's app does when imported).
SUPERVISOR_ONLY = {"_MLFLOW_SERVER_BOOT_ID", "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED"}

RUN_CLI = """
import json, os, sys
import mlflow.server

captured = {}

class Exited:
    pid = 0
    def poll(self): return 0
    def wait(self): return 0

def start_worker(cmd, *, extra_env=None, **kwargs):
    captured.update(cmd=cmd, env=extra_env)
    return Exited()

mlflow.server._exec_cmd = start_worker
from mlflow.cli import server
server.main(json.loads(sys.argv[1]), prog_name="mlflow server", standalone_mode=False)
captured["environ"] = {k: v for k, v in os.environ.items() if "MLFLOW" in k}
print("CAPTURED " + json.dumps(captured))
"""


def settings(tmp_path: Path) -> MlflowServiceSettings:
    return MlflowServiceSettings(
        static_prefix="/services/mlflow",
        backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.sqlite'}",
        auth_database_uri=f"sqlite:///{tmp_path / 'auth.sqlite'}",
        artifacts_destination=str(tmp_path / "artifacts"),
    )


def what_mlflow_server_hands_its_worker(tmp_path: Path, values: MlflowServiceSettings) -> dict:
    auth_config = tmp_path / "auth.ini"
    auth_config.write_text(auth_config_text(values, BOOTSTRAP_ADMIN))
    # Only what `mlflow server` has no option for (as the service sets it), none of gpulab's variables.
    env = {key: value for key, value in os.environ.items() if "MLFLOW" not in key}
    env.update({key: value for key, value in mlflow_environment(values, "s" * 64, auth_config).items()
                if key not in worker_environment(values)})
    arguments = server_arguments(values, "127.0.0.1", 5000)
    done = subprocess.run([sys.executable, "-c", RUN_CLI, json.dumps(arguments)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout[done.stdout.rindex("CAPTURED ") + len("CAPTURED "):])


def test_the_service_sets_what_mlflow_server_hands_its_worker(tmp_path):
    values = settings(tmp_path)
    captured = what_mlflow_server_hands_its_worker(tmp_path, values)
    handed = {**captured["environ"], **captured["env"]}  # the worker inherits the CLI's environment

    ours = worker_environment(values)
    assert {key: handed.get(key) for key in ours} == ours
    private = {key for key in captured["env"] if key.startswith("_")} - SUPERVISOR_ONLY
    assert private == {key for key in ours if key.startswith("_")}
    everything = mlflow_environment(values, "s" * 64, tmp_path / "auth.ini")
    assert {key for key in everything if key.startswith("_")} == private  # no private variable of our own

    command = captured["cmd"]
    assert command[command.index("--workers") + 1] == "1"
    assert command[-2:] == ["--factory", "mlflow.server.auth:create_app"]  # the app build_app wraps
