"""The MLflow service in the hub's configuration: a pure `apply_config` step and its builders.

The hub starts the service (`python -m gpulab.extensions.mlflow`) at /services/mlflow/, gives
it a least-privilege role, lets every user and every user server's token reach it, and sets
the MLflow variables in every user server's environment. A hub running as root starts it as
its own system account (e.g. "gpulab_svc-mlflow"), which owns the MLflow folder and nothing
else: MLflow writes what users send, so it must not hold root's rights.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from gpulab.hub_config.services.config import (
    add_managed_service,
    add_service_role,
    grant_server_tokens_access,
    grant_users_access,
    own_account,
    python_module_command,
    service_prefix,
    service_url,
)
from gpulab.hub_config.registry import Extension, NavLink
from gpulab.hub_config.typed_settings import Settings

from .service_settings import MlflowServiceSettings

NAME = "mlflow"
MODULE = "gpulab.extensions.mlflow"
# What the service asks the hub: who a user is, with their groups and admin flag
# (read:users), and whether a project exists (its groups' names).
SERVICE_SCOPES = ["read:users", "read:groups:name", "list:groups"]
TOKEN_VARIABLE = "MLFLOW_TRACKING_TOKEN"


def data_folder(s: Settings) -> Path:
    return Path(s.hub.data_dir, "mlflow")


def static_prefix(s: Settings) -> str:
    """MLflow's --static-prefix: the service's path without the trailing slash."""
    return service_prefix(s, NAME).rstrip("/")


def artifacts_destination(s: Settings) -> str:
    configured = s.mlflow.artifacts_destination
    if not configured:
        return str(data_folder(s) / "artifacts")
    if "://" in configured:
        return configured
    return str(Path(s.hub.data_dir, configured).resolve())


def owned_folders(s: Settings) -> list[str]:
    """What the service's account owns: its data folder, and a local artifact store kept elsewhere."""
    folders = [str(data_folder(s))]
    destination = artifacts_destination(s)
    if "://" not in destination and data_folder(s) not in Path(destination).parents:
        folders.append(destination)
    return folders


def tracking_uri(s: Settings) -> str:
    """The address user servers send MLflow calls to."""
    configured = s.mlflow.tracking_uri
    if configured:
        return configured.rstrip("/")
    return f"{service_url(s, NAME)}{static_prefix(s)}"


def default_experiment_name(user_name: str) -> str:
    """Each user's own experiment, where runs go until they pick another."""
    return f"Default ({user_name})"


def service_settings(s: Settings) -> MlflowServiceSettings:
    """What the service process needs, handed over as JSON (secrets included, never on a command line)."""
    mlflow = s.mlflow
    folder = data_folder(s)
    return MlflowServiceSettings(
        static_prefix=static_prefix(s),
        data_dir=str(folder),
        backend_store_uri=mlflow.backend_store_uri or f"sqlite:///{folder / 'mlflow.sqlite'}",
        auth_database_uri=mlflow.auth_database_uri or f"sqlite:///{folder / 'auth.sqlite'}",
        artifacts_destination=artifacts_destination(s),
        s3=mlflow.s3,
        cache_seconds=mlflow.cache_seconds,
        log_level=s.hub.log_level,
    )


def _server_token(spawner) -> str:
    return spawner.api_token


def _experiment_for(spawner) -> str:
    return default_experiment_name(spawner.user.name)


def server_environment(s: Settings) -> dict:
    """Variables every user server gets; callables are evaluated per server by the spawner."""
    environment = {
        "MLFLOW_TRACKING_URI": tracking_uri(s),
        TOKEN_VARIABLE: _server_token,
        "MLFLOW_EXPERIMENT_NAME": _experiment_for,
        # The browser address of the UI, for the JupyterLab launcher.
        "GPULAB_MLFLOW_URL": service_prefix(s, NAME),
    }
    if not s.mlflow.tracking_uri:
        # The client prints "View run at <tracking URI>/#/..." links; the loopback address
        # is not one a browser can open, so no links rather than wrong ones.
        environment["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return environment


def update_mlflow(s: Settings, c: Config) -> None:
    # display=False: the "MLflow" link (nav_links) replaces the hub's Services menu entry
    add_managed_service(c, s, NAME, python_module_command(MODULE), service_settings(s).as_dict(), display=False,
                        run_as=own_account(s, NAME, owned_folders(s)))
    add_service_role(c, NAME, list(SERVICE_SCOPES))
    grant_users_access(c, NAME)
    grant_server_tokens_access(c, NAME)


def nav_links(s: Settings) -> list[NavLink]:
    return [NavLink("MLflow", service_prefix(s, NAME))]


def enabled(s: Settings) -> bool:
    return s.mlflow.enabled


EXTENSION = Extension("mlflow", 50, update_mlflow, enabled=enabled, nav_links=nav_links,
                      server_environment=server_environment)
