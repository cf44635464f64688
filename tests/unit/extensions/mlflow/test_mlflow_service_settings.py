"""What the hub hands the MLflow service, as JSON, reads back into the same typed settings on the
service's side (its entry, __main__.py), secrets and derived paths included."""

from __future__ import annotations

from traitlets.config import Config

from gpulab.extensions.mlflow.config import service_settings
from gpulab.extensions.mlflow.service_settings import MlflowServiceSettings
from gpulab.hub_config.apply import apply_config
from tests.support.settings import handed_over, typed_settings


def test_the_service_reads_back_the_defaults_the_hub_sent():
    s = typed_settings(hub={"data_dir": "/srv/gpulab/data", "base_url": "/jh/", "log_level": "DEBUG"})
    sent = handed_over(apply_config(s, Config()), "mlflow")
    read = MlflowServiceSettings.of(sent)
    assert read.as_dict() == sent == service_settings(s).as_dict()
    assert sent == {
        "static_prefix": "/jh/services/mlflow",
        "data_dir": "/srv/gpulab/data/mlflow",
        "backend_store_uri": "sqlite:////srv/gpulab/data/mlflow/mlflow.sqlite",
        "auth_database_uri": "sqlite:////srv/gpulab/data/mlflow/auth.sqlite",
        "artifacts_destination": "/srv/gpulab/data/mlflow/artifacts",
        "s3": {"endpoint_url": "", "access_key_id": "", "secret_access_key": "", "region": ""},
        "cache_seconds": 30,
        "log_level": "DEBUG",
    }


def test_the_service_reads_back_stores_and_s3_credentials():
    s = typed_settings(hub={"data_dir": "/srv/gpulab/data"}, mlflow={
        "backend_store_uri": "postgresql://mlflow@db/mlflow", "auth_database_uri": "postgresql://mlflow@db/auth",
        "artifacts_destination": "s3://bucket/mlflow", "cache_seconds": 5,
        "s3": {"endpoint_url": "http://minio:9000", "access_key_id": "key", "secret_access_key": "secret",
               "region": "eu-west-1"}})
    sent = handed_over(apply_config(s, Config()), "mlflow")
    read = MlflowServiceSettings.of(sent)
    assert read.as_dict() == sent
    assert read.s3 == s.mlflow.s3 and read.s3.secret_access_key == "secret"
    assert (read.backend_store_uri, read.auth_database_uri) == ("postgresql://mlflow@db/mlflow", "postgresql://mlflow@db/auth")
    assert (read.artifacts_destination, read.cache_seconds, read.log_level) == ("s3://bucket/mlflow", 5, "INFO")
