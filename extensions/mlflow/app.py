"""The MLflow tracking server as one lean process: MLflow's FastAPI app with its basic-auth
permission model, gpulab's gate (hub tokens and hub OAuth) and hooks (project experiments).

MLflow's documented way to run it is `mlflow server` with the options of `server_arguments`
(its basic-auth app, with gpulab's authorization function named in the app's config file, the
documented way to plug in one). That command is a supervisor: it hands its uvicorn worker the
configuration through variables MLflow keeps private (`_MLFLOW_SERVER_*`,
`_MLFLOW_STATIC_PREFIX`, `_MLFLOW_SGI_NAME`, `_MLFLOW_IN_JOB_EXECUTOR`), then only waits.
gpulab builds the same app in one process and sets exactly those variables for MLflow's server
modules (`worker_environment`); a test runs MLflow's own CLI on `server_arguments` and checks
that it hands its worker the same, so an MLflow release that changes them fails a test. Run
through the CLI, the service measured a second process with MLflow imported again: about
250 MiB more RSS and 2.5 s more CPU at every start. One uvicorn worker and no job consumers:
those only serve MLflow's GenAI jobs (scorers, prompt optimisation), which are switched off here.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .service_settings import MlflowServiceSettings

BOOTSTRAP_PASSWORD_BYTES = 24
ASSISTANT_PATH = "/ajax-api/3.0/mlflow/assistant"
ARTIFACT_ROOT = "mlflow-artifacts:/"  # where --serve-artifacts puts new experiments' artifacts


def auth_config_text(settings: MlflowServiceSettings, bootstrap_admin: str) -> str:
    """MLflow's auth config: nobody sees an experiment without a grant; gpulab decides who is asking."""
    return "\n".join([
        "[mlflow]",
        "default_permission = NO_PERMISSIONS",
        f"database_uri = {settings.auth_database_uri}",
        f"admin_username = {bootstrap_admin}",
        "authorization_function = gpulab.extensions.mlflow.access:authenticate",
        "grant_default_workspace_access = false",
        "",
    ])


def server_arguments(settings: MlflowServiceSettings, host: str, port: int) -> list[str]:
    """The `mlflow server` options this service stands for (pure). gpulab's authorization
    function comes in through the basic-auth app's config file (auth_config_text)."""
    return [
        "--backend-store-uri", settings.backend_store_uri,
        "--registry-store-uri", settings.backend_store_uri,
        "--serve-artifacts",
        "--default-artifact-root", ARTIFACT_ROOT,
        "--artifacts-destination", settings.artifacts_destination,
        "--static-prefix", settings.static_prefix,
        "--host", host,
        "--port", str(port),
        "--workers", "1",
        "--app-name", "basic-auth",
        # Every request is authenticated, so MLflow's localhost-only host and origin checks
        # would only refuse the hub's public address; gpulab checks the origin of cookie
        # requests itself (access.same_origin).
        "--allowed-hosts", "*",
        "--cors-allowed-origins", "*",
        "--disable-workspaces",
    ]


def worker_environment(settings: MlflowServiceSettings) -> dict[str, str]:
    """What `mlflow server` with `server_arguments` sets for its worker (pure). MLflow's server
    modules read it when they are imported, and have no public setting for any of it short of
    running `mlflow server` itself (see the module's docstring)."""
    return {
        "_MLFLOW_SERVER_FILE_STORE": settings.backend_store_uri,
        "_MLFLOW_SERVER_REGISTRY_STORE": settings.backend_store_uri,
        "_MLFLOW_SERVER_ARTIFACT_ROOT": ARTIFACT_ROOT,
        "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": settings.artifacts_destination,
        "_MLFLOW_STATIC_PREFIX": settings.static_prefix,
        "_MLFLOW_SGI_NAME": "uvicorn",  # the auth app then builds MLflow's FastAPI app
        "_MLFLOW_IN_JOB_EXECUTOR": "false",  # the server never rebuilds scorer code (as mlflow server)
        # The public variables of --allowed-hosts, --cors-allowed-origins, --disable-workspaces
        "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "*",
        "MLFLOW_ENABLE_WORKSPACES": "false",
    }


def mlflow_environment(settings: MlflowServiceSettings, secret_key: str, auth_config_path: Path) -> dict[str, str]:
    """The variables MLflow's server modules read when they are imported (pure)."""
    env = {
        **worker_environment(settings),
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config_path),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(BOOTSTRAP_PASSWORD_BYTES),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    s3 = settings.s3
    optional = {
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
        "AWS_DEFAULT_REGION": s3.region,
    }
    env.update({key: value for key, value in optional.items() if value})
    return env


def private_file(path: Path, create: Callable[[], str]) -> str:
    """Read a file only the service's user can read, creating it first if needed."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(create())
    path.chmod(0o600)
    return path.read_text().strip()


def use_wal(database_uri: str) -> None:
    """Switch an SQLite database to write-ahead logging (persistent; MLflow leaves SQLite in
    rollback-journal mode, which costs several fsyncs per logged metric)."""
    if not database_uri.startswith("sqlite:///"):
        return
    import sqlite3

    connection = sqlite3.connect(database_uri[len("sqlite:///"):])
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def prepare(settings: MlflowServiceSettings) -> None:
    """Folders, the persistent secret, the auth config, and MLflow's environment."""
    from .access import BOOTSTRAP_ADMIN

    data_dir = Path(settings.data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if "://" not in settings.artifacts_destination:
        Path(settings.artifacts_destination).mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_key = private_file(data_dir / "session-secret", lambda: secrets.token_hex(32))
    auth_config = data_dir / "auth.ini"
    auth_config.touch(mode=0o600)
    auth_config.write_text(auth_config_text(settings, BOOTSTRAP_ADMIN))
    for database in (settings.backend_store_uri, settings.auth_database_uri):
        use_wal(database)
    os.environ.update(mlflow_environment(settings, secret_key, auth_config))


def build_app(settings: MlflowServiceSettings):
    """The ASGI application. Call `prepare(settings)` first: MLflow reads its environment on import."""
    from jupyterhub.services.auth import HubOAuth
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app
    from mlflow.server.auth import store as auth_store
    from mlflow.server.handlers import _get_tracking_store, initialize_backend_stores
    from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME

    import mlflow.server.auth as mlflow_auth

    from . import access, artifacts, fastpath
    from .accounts import Accounts
    from .browser import BrowserSessions
    from .hooks import Hooks
    from .identity import HubIdentities
    from .limits import limit_json_depth
    from .ui_defaults import install as install_ui_defaults

    artifacts.install(artifacts.ArtifactRoot(settings.artifacts_destination))
    initialize_backend_stores(settings.backend_store_uri, settings.backend_store_uri, ARTIFACT_ROOT)
    asgi_app = create_app(flask_app)  # MLflow's auth app: its store, validators and FastAPI bridge

    hub_oauth = HubOAuth(cache_max_age=0)
    identities = HubIdentities(hub_oauth, ttl=settings.cache_seconds)
    browser = BrowserSessions(hub_oauth, os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"], settings.static_prefix)
    decisions = fastpath.Decisions(ttl=settings.cache_seconds)
    accounts = Accounts(auth_store, DEFAULT_WORKSPACE_NAME, on_change=decisions.forget_user)
    access.install(access.Gate(identities, browser, accounts))
    fastpath.install(mlflow_auth, decisions, access.current_admin_flag)

    def oauth_callback():
        from flask import request

        if request.path == browser.callback_path:
            return browser.finish_sign_in(request)
        return None

    # First of all before-request functions: the callback has no session yet.
    flask_app.before_request_funcs.setdefault(None, []).insert(0, oauth_callback)
    Hooks(settings.static_prefix, accounts, identities.project_exists, _get_tracking_store,
          on_grant=decisions.forget_all).install(flask_app)
    install_ui_defaults(flask_app)
    return limit_json_depth(without_paths(asgi_app, [settings.static_prefix + ASSISTANT_PATH, ASSISTANT_PATH]))


def without_paths(app, prefixes: list[str]):
    """Answer 404 under `prefixes`. MLflow's assistant trusts every loopback connection, and on
    a hub every request arrives from loopback (the proxy, or a user server on this machine)."""

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(tuple(prefixes)):
            body = b'{"error_code": "ENDPOINT_NOT_FOUND", "message": "the MLflow assistant is disabled on gpulab"}'
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return guarded
