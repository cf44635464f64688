"""The pure parts of MLflow's guards: artifact locations, body limits, experiment names, the
service's account. (End to end, against a real hub: tests/security/test_mlflow_isolation.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from traitlets.config import Config

from gpulab.extensions.mlflow.artifacts import ArtifactRoot, install
from gpulab.extensions.mlflow.config import owned_folders
from gpulab.extensions.mlflow.identity import Identity
from gpulab.extensions.mlflow.limits import graphql_problem, json_too_deep
from gpulab.extensions.mlflow.naming import check_reserved, normal_form, project_of_name
from gpulab.hub_config.services.config import (
    RUN_AS_VARIABLE,
    add_managed_service,
    hub_database_file,
    pass_hub_environment,
)
from gpulab.hub_config.services.errors import NotAllowed
from gpulab.hub_config.services.service_account import ServiceAccount, service_account_name
from gpulab.hub_config.typed_settings import Settings
from gpulab.spawner.accounts import SAFE_ACCOUNT
from tests.support.settings import typed_settings

ROOT = "/data/mlflow/artifacts"


@pytest.mark.parametrize("uri", [
    "mlflow-artifacts:/1/abc/artifacts", "runs:/abc/model", "models:/m/1",
    ROOT, f"{ROOT}/1/abc/artifacts", f"file://{ROOT}/1", f"file://localhost{ROOT}/1",
])
def test_locations_in_the_root_are_allowed(uri):
    assert ArtifactRoot(ROOT).refusal(uri) is None


@pytest.mark.parametrize("uri", [
    "file:///home/bob/mlart", "/home/bob", f"{ROOT}/../../x", f"{ROOT}-other/1", f"file://evil{ROOT}",
    "/data/mlflow", "relative/folder",
])
def test_local_locations_outside_the_root_are_refused(uri):
    assert "outside this MLflow server's artifact root" in ArtifactRoot(ROOT).refusal(uri)


@pytest.mark.parametrize("uri", ["s3://bucket/x", "https://example.com/x", "gs://b/x", "sftp://host/x"])
def test_stores_that_are_not_configured_are_refused(uri):
    scheme = uri.split(":")[0]
    assert f"no {scheme}:// store is configured" in ArtifactRoot(ROOT).refusal(uri)


def test_an_s3_root_allows_only_its_own_prefix():
    root = ArtifactRoot("s3://ml/artifacts")
    assert root.refusal("s3://ml/artifacts/1/abc") is None
    for uri in ("s3://ml/other", "s3://ml/artifacts-x/1", "s3://ml/artifacts/../other", "s3://other/artifacts",
                "/tmp/x", "file:///tmp/x"):
        assert root.refusal(uri), uri


def test_a_local_repository_never_leads_out_of_the_root(tmp_path):
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry as registry

    root = tmp_path / "artifacts"
    (root / "1" / "run").mkdir(parents=True)
    (root / "1" / "run" / "artifacts").symlink_to(tmp_path)
    (tmp_path / "secret").write_text("s")
    saved = dict(registry._registry)
    try:
        install(ArtifactRoot(str(root)))
        inside = registry.get_artifact_repository(str(root / "1" / "other"))
        inside.log_artifact(str(tmp_path / "secret"))  # a plain folder in the root works
        assert [f.path for f in inside.list_artifacts()] == ["secret"]
        linked = registry.get_artifact_repository(str(root / "1" / "run" / "artifacts"))
        with pytest.raises(MlflowException, match="outside"):
            linked.download_artifacts("secret")
        with pytest.raises(MlflowException, match="outside"):
            registry.get_artifact_repository(f"file://{tmp_path}")
        with pytest.raises(MlflowException, match="not configured|no s3"):
            registry.get_artifact_repository("s3://bucket/x")
    finally:
        registry._registry.clear()
        registry._registry.update(saved)


# ------------------------------------------------------------ bodies


def test_json_nesting_is_bounded_without_counting_brackets_in_strings():
    assert json_too_deep(b"[" * 100_000)
    assert json_too_deep(b'{"a": ' * 65 + b"1" + b"}" * 65)
    assert not json_too_deep(b'{"a": ' * 64 + b"1" + b"}" * 64)
    assert not json_too_deep(json.dumps({"metrics": [{"key": "[[[[" * 100, "value": i} for i in range(1000)]}).encode())
    assert not json_too_deep(b'{"value": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')


def test_graphql_must_parse_and_stay_shallow():
    assert graphql_problem({"query": "query { mlflowGetRun(input: {runId: \"{{{{\"}) { run { info { runId } } } }"}) is None
    assert "deeper" in graphql_problem({"query": "{" + " a {" * 40 + "}" * 41})
    assert "does not parse" in graphql_problem({"query": "query { a("})
    assert "JSON object" in graphql_problem(None)
    assert "JSON object" in graphql_problem({"query": 5})


# ------------------------------------------------------------ names


def test_names_are_judged_in_their_normal_form():
    assert normal_form(" Default\u00a0 (bob)\u3000") == "Default (bob)"
    assert project_of_name("vision\uff0fsweep") == "vision"
    alice = Identity("alice", False, frozenset())
    for name in ("Default (bob) ", "Default\u00a0(bob)", "Default(bob)", "Default ( BOB )", "Default\uff08bob\uff09"):
        with pytest.raises(NotAllowed, match="reserved for"):
            check_reserved(name, alice)
    check_reserved("Default (alice) ", alice)
    check_reserved("Defaults (bob)", alice)


# ------------------------------------------------------------ the service's account


@pytest.mark.parametrize("prefix", ["gpulab-", "gpulab_", "t3f9a-", "a", "_", "x" * 16, "svc-"])
def test_the_service_account_is_never_a_hub_users(prefix):
    name = service_account_name(prefix, "mlflow")
    assert SAFE_ACCOUNT.match(name) and len(name) <= 32
    assert not name.startswith(prefix)  # every hub user's account does


def values_with(**mlflow) -> Settings:
    return typed_settings({"hub": {"data_dir": "/srv/gpulab"}, "mlflow": mlflow}, Path("/srv/gpulab"))


def test_the_account_owns_the_mlflow_folder_and_a_local_store_kept_elsewhere():
    assert owned_folders(values_with()) == ["/srv/gpulab/mlflow"]
    assert owned_folders(values_with(artifacts_destination="/big/artifacts")) == ["/srv/gpulab/mlflow", "/big/artifacts"]
    assert owned_folders(values_with(artifacts_destination="s3://ml/a")) == ["/srv/gpulab/mlflow"]


def spec_with_account(db_url: str = "") -> tuple[Config, dict]:
    c = Config()
    if db_url:
        c.JupyterHub.db_url = db_url
    spec = add_managed_service(c, values_with(), "mlflow", ["python"], {},
                               run_as=ServiceAccount("gpulab_svc-mlflow", ("/srv/gpulab/mlflow",)))
    return c, spec


def test_a_root_hub_starts_the_service_as_its_account(tmp_path, monkeypatch):
    c, spec = spec_with_account(f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}")
    assert "user" not in spec and json.loads(spec["environment"][RUN_AS_VARIABLE])["name"] == "gpulab_svc-mlflow"
    prepared = []
    monkeypatch.setattr("gpulab.hub_config.services.config.prepare", prepared.append)
    pass_hub_environment(c, {}, 1, euid=0)
    assert prepared == [ServiceAccount("gpulab_svc-mlflow", ("/srv/gpulab/mlflow",))]
    assert (spec["user"], spec["cwd"]) == ("gpulab_svc-mlflow", "/srv/gpulab/mlflow")
    assert os.stat(tmp_path / "jupyterhub.sqlite").st_mode & 0o777 == 0o600


def test_a_hub_that_is_not_root_starts_it_as_itself(monkeypatch):
    c, spec = spec_with_account()
    monkeypatch.setattr("gpulab.hub_config.services.config.prepare", lambda account: pytest.fail("prepared"))
    pass_hub_environment(c, {}, 1, euid=1000)
    assert "user" not in spec and "cwd" not in spec


def test_the_hub_database_file_comes_from_its_url():
    c = Config()
    c.JupyterHub.db_url = "sqlite:////srv/gpulab/jupyterhub.sqlite"
    assert hub_database_file(c) == "/srv/gpulab/jupyterhub.sqlite"
    c.JupyterHub.db_url = "postgresql://db/hub"
    assert hub_database_file(c) is None
