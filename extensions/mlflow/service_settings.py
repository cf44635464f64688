"""What the hub hands the MLflow service (GPULAB_SERVICE_SETTINGS), typed: config.py builds it, the
service reads it back at its entry (pydantic costs it nothing: MLflow imports it anyway)."""

from __future__ import annotations

from pydantic import Field

from gpulab.hub_config.typed_settings import LogLevel, MlflowS3, Model


class MlflowServiceSettings(Model):
    static_prefix: str = ""  # MLflow's --static-prefix: the service's path, no trailing slash
    data_dir: str = ""  # the service's folder: secret, auth config, default SQLite stores
    backend_store_uri: str = ""
    auth_database_uri: str = ""
    artifacts_destination: str = ""  # a folder, or a URL (s3://...)
    s3: MlflowS3 = Field(default_factory=MlflowS3)
    cache_seconds: int = 30
    log_level: LogLevel = "INFO"
