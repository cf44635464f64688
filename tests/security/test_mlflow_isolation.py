"""MLflow cannot be turned against the machine (issue 12, findings 1, 10 and 11).

A real hub running as root, its real MLflow service, users holding real hub API tokens,
plain REST calls. The attack this guards against: an experiment whose artifact location is
a folder the user controls (`file:///home/<me>/mlart`), a symlink in it to the hub's data
directory, then `get-artifact` returned the hub's cookie secret and `upload-artifact` wrote
root-owned files into any folder. Locations can no longer be chosen; a location stored
before (put straight into MLflow's database here, as an older gpulab let users do) is refused
at every use; and the service runs as its own account, which cannot read the hub's secrets
even if a link slips in.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import sqlite3
import subprocess
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from gpulab.hub_config.services.service_account import MARKER, service_account_name
from gpulab.spawner.accounts import account_name, ensure_account

pytestmark = pytest.mark.root

SECRET = "jupyterhub_cookie_secret"


@pytest.fixture(scope="module")
def service_account(account_prefix):
    return service_account_name(account_prefix, "mlflow")


@pytest.fixture(scope="module")
def hub(module_hub_factory, homes_root, account_prefix):
    hub = module_hub_factory.start({"mlflow": {"cache_seconds": 1}})
    for name in ("alice", "bob"):
        hub.create_user(name)
        asyncio.run(ensure_account(account_name(name, account_prefix), homes_root))  # their homes, as a spawn makes
    return hub


@pytest.fixture(scope="module")
def tokens(hub):
    return {name: hub.user_token(name) for name in ("alice", "bob")}


@pytest.fixture(scope="module")
def url(hub):
    return hub.url + "services/mlflow"


def home(name: str, prefix: str) -> Path:
    return Path(pwd.getpwnam(account_name(name, prefix)).pw_dir)


def call(url: str, token: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{url}/{path}", headers=headers, **kwargs)


def new_run(url: str, token: str) -> tuple[str, str]:
    created = call(url, token, "POST", "api/2.0/mlflow/experiments/create", json={"name": f"exp-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 200, created.text
    experiment = created.json()["experiment_id"]
    run = call(url, token, "POST", "api/2.0/mlflow/runs/create", json={"experiment_id": experiment})
    assert run.status_code == 200, run.text
    return experiment, run.json()["run"]["info"]["run_id"]


def store_location(hub, experiment: str, run: str, location: str) -> None:
    """What an older gpulab stored for `experiments/create` with this artifact_location."""
    with sqlite3.connect(hub.data_dir / "mlflow" / "mlflow.sqlite") as db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (location, int(experiment)))
        db.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (f"{location}/{run}/artifacts", run))


def mlflow_process(hub) -> psutil.Process:
    for child in psutil.Process(hub.process.pid).children():
        if "gpulab.extensions.mlflow" in " ".join(child.cmdline()):
            return child
    raise AssertionError("the hub has no MLflow service process")


def can_read_as(uid: int, gid: int, path: Path) -> bool:
    result = subprocess.run(["cat", str(path)], user=uid, group=gid, extra_groups=[], capture_output=True)
    return result.returncode == 0


# ------------------------------------------------------------ the service's account


def test_mlflow_runs_as_its_own_account_that_cannot_read_the_hubs_secrets(hub, service_account):
    account = pwd.getpwnam(service_account)
    assert account.pw_uid != 0 and account.pw_gecos == MARKER and account.pw_shell.endswith(("nologin", "false"))
    status = Path(f"/proc/{mlflow_process(hub).pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(account.pw_uid)] * 4  # real, effective, saved, file system

    folder = os.stat(hub.data_dir / "mlflow")
    assert (folder.st_uid, folder.st_mode & 0o777) == (account.pw_uid, 0o700)
    assert can_read_as(account.pw_uid, account.pw_gid, hub.data_dir / "mlflow" / "session-secret")
    for private in (SECRET, "jupyterhub.sqlite", "state/gpulab.sqlite"):
        assert (hub.data_dir / private).exists(), private
        assert not can_read_as(account.pw_uid, account.pw_gid, hub.data_dir / private), private


def test_a_hub_user_named_like_the_service_account_gets_another_account(service_account, account_prefix):
    assert not service_account.startswith(account_prefix)
    assert account_name(service_account[len(account_prefix) - 1:], account_prefix) != service_account


# ------------------------------------------------------------ artifact locations


@pytest.mark.parametrize("location", ["file:///tmp/mlart", "/tmp/mlart", "s3://bucket/mlart", "mlflow-artifacts:/1"])
def test_an_experiment_cannot_choose_its_artifact_location(url, tokens, location):
    response = call(url, tokens["alice"], "POST", "api/2.0/mlflow/experiments/create",
                    json={"name": f"mine-{uuid.uuid4().hex[:8]}", "artifact_location": location})
    assert response.status_code == 400, response.text
    assert "artifact_location cannot be chosen" in response.json()["message"]


def test_the_attack_a_link_from_a_users_folder_to_the_data_directory(hub, url, tokens, account_prefix):
    experiment, run = new_run(url, tokens["alice"])
    mlart = home("alice", account_prefix) / "mlart"
    (mlart / run).mkdir(parents=True)
    (mlart / run / "artifacts").symlink_to(hub.data_dir)  # what alice can do in her own home
    store_location(hub, experiment, run, f"file://{mlart}")

    read = call(url, tokens["alice"], "GET", "get-artifact", params={"path": SECRET, "run_uuid": run})
    secret = (hub.data_dir / SECRET).read_bytes()
    assert read.status_code == 400 and secret not in read.content
    assert "outside this MLflow server's artifact root" in read.json()["message"]
    listed = call(url, tokens["alice"], "GET", "api/2.0/mlflow/artifacts/list", params={"run_id": run})
    assert listed.status_code == 400


def test_no_upload_lands_outside_the_artifact_root(hub, url, tokens, account_prefix):
    experiment, run = new_run(url, tokens["alice"])
    bob_home = home("bob", account_prefix)
    store_location(hub, experiment, run, f"file://{bob_home}")
    upload = call(url, tokens["alice"], "POST", "ajax-api/2.0/mlflow/upload-artifact",
                  params={"run_uuid": run, "path": "planted.txt"}, data=b"owned")
    assert upload.status_code == 400, upload.text
    model = call(url, tokens["alice"], "POST", "api/2.0/mlflow/logged-models", json={"experiment_id": experiment})
    assert model.status_code == 200, model.text  # a logged model takes the experiment's location
    model_id = model.json()["model"]["info"]["model_id"]
    model_file = call(url, tokens["alice"], "GET", f"ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files",
                      params={"artifact_file_path": "MLmodel"})
    assert model_file.status_code == 400, model_file.text
    assert not any(bob_home.rglob("planted.txt")) and not (bob_home / "models").exists()


def test_the_service_account_cannot_write_into_a_users_home(hub, service_account, account_prefix):
    account = pwd.getpwnam(service_account)
    target = home("bob", account_prefix) / "from-mlflow"
    result = subprocess.run(["touch", str(target)], user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                            capture_output=True)
    assert result.returncode != 0 and not target.exists()


def test_a_link_inside_the_artifact_root_is_not_followed_out(hub, url, tokens):
    experiment, run = new_run(url, tokens["alice"])
    run_folder = hub.data_dir / "mlflow" / "artifacts" / experiment / run
    run_folder.mkdir(parents=True)
    (run_folder / "artifacts").symlink_to(hub.data_dir)
    secret = (hub.data_dir / SECRET).read_bytes()
    through_run = call(url, tokens["alice"], "GET", "get-artifact", params={"path": SECRET, "run_uuid": run})
    proxied = call(url, tokens["alice"], "GET", f"api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/{SECRET}")
    for response in (through_run, proxied):
        assert 400 <= response.status_code < 500 and secret not in response.content, response.text


def test_an_s3_location_without_s3_is_a_400(hub, url, tokens):
    experiment, run = new_run(url, tokens["alice"])
    store_location(hub, experiment, run, "s3://nobody/mlart")
    listed = call(url, tokens["alice"], "GET", "api/2.0/mlflow/artifacts/list", params={"run_id": run})
    read = call(url, tokens["alice"], "GET", "get-artifact", params={"path": "x.txt", "run_uuid": run})
    assert (listed.status_code, read.status_code) == (400, 400), listed.text
    assert "no s3:// store is configured" in listed.json()["message"]


# ------------------------------------------------------------ names and bad input


@pytest.mark.parametrize("name", ["Default (alice) ", "Default\u00a0(alice)", " Default  (alice)", "Default\uff08alice\uff09"])
def test_look_alikes_of_a_reserved_name_are_refused(url, tokens, name):
    response = call(url, tokens["bob"], "POST", "api/2.0/mlflow/experiments/create", json={"name": name})
    assert response.status_code == 403 and "reserved for alice" in response.json()["message"]


def test_deeply_nested_json_is_a_400(url, tokens):
    response = call(url, tokens["alice"], "POST", "api/2.0/mlflow/experiments/create", data="[" * 100_000,
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nests deeper" in response.json()["message"]


@pytest.mark.parametrize("query", ["query { " + "a { " * 5000 + "}" * 5001, "query { mlflowGetRun(", "   "])
def test_a_bad_or_deep_graphql_query_is_a_400(url, tokens, query):
    response = call(url, tokens["alice"], "POST", "graphql", json={"query": query})
    assert response.status_code == 400 and response.json()["message"], response.text


def test_a_shallow_graphql_query_still_works(url, tokens):
    _, run = new_run(url, tokens["alice"])
    query = 'query { mlflowGetRun(input: {runId: "%s"}) { run { info { runId } } } }' % run
    response = call(url, tokens["alice"], "POST", "graphql", json={"query": query})
    assert response.status_code == 200 and response.json()["data"]["mlflowGetRun"]["run"]["info"]["runId"] == run


# ------------------------------------------------------------ upgrading (last: restarts the hub)


def test_an_install_whose_mlflow_ran_as_root_keeps_its_data(hub, url, tokens, service_account):
    experiment, run = new_run(url, tokens["alice"])
    hub.stop()
    for root, dirs, files in os.walk(hub.data_dir / "mlflow"):  # as an older gpulab left it
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, 0, 0, follow_symlinks=False)
    hub.start()
    got = call(url, tokens["alice"], "GET", "api/2.0/mlflow/runs/get", params={"run_id": run})
    assert got.status_code == 200 and got.json()["run"]["info"]["experiment_id"] == experiment
    uid = pwd.getpwnam(service_account).pw_uid
    assert {os.lstat(p).st_uid for p in (hub.data_dir / "mlflow").rglob("*")} == {uid}
