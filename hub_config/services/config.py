"""Registering a gpulab service with the hub: pure helpers for `apply_config` steps.

Locally the hub starts each service itself (a managed service). A service gets the part of
the settings it needs as JSON in GPULAB_SERVICE_SETTINGS: the hub logs a service's command
line but not its environment, so secrets stay out of the log. A service that needs no root
declares its own system account (`run_as`); a hub running as root starts it as that
account (service_account.py).
"""

from __future__ import annotations

import json
import os
import pwd
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from traitlets.config import Config

from .lifetime import HUB_PID_VARIABLE
from .service_account import ServiceAccount, prepare, service_account_name

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read (services import this module)
    from gpulab.hub_config.typed_settings import Settings

SETTINGS_VARIABLE = "GPULAB_SERVICE_SETTINGS"
NAV_VARIABLE = "GPULAB_NAV"
BIND_VARIABLE = "GPULAB_SERVICE_BIND"
RUN_AS_VARIABLE = "GPULAB_SERVICE_ACCOUNT"  # {"name": ..., "owns": [...]}: what the hub prepares
ROOT_ONLY_VARIABLE = "GPULAB_SERVICE_ROOT_ONLY"  # started only by a hub that runs as root

# Services listen at hub.internal_port + offset: on 127.0.0.1, or, when hub.service_host is
# set (the proxy and user servers run elsewhere), on every interface (BIND_VARIABLE).
SERVICE_PORT_OFFSETS = {
    "projects": 1,
    "mlflow": 2,
    "scheduler": 3,
    "ssh": 4,
    "culler": 5,
    "usage": 6,
}


def service_port(s: Settings, name: str) -> int:
    return s.hub.internal_port + SERVICE_PORT_OFFSETS[name]


def service_url(s: Settings, name: str) -> str:
    """Where the proxy, the hub and user servers reach the service."""
    host = s.hub.service_host or "127.0.0.1"
    return f"http://{host}:{service_port(s, name)}"


def listening_services(c: Config) -> list[tuple[str, str, int]]:
    """(name, address, port) of each service the hub starts that listens (pure): where
    runner.serve binds, for `gpulab up`'s check that the port is free."""
    found = []
    for spec in _managed(c):
        if spec.get("url"):
            url = urlparse(spec["url"])
            found.append((spec["name"], spec["environment"].get(BIND_VARIABLE) or url.hostname, url.port))
    return found


# What Linux takes for a Unix socket's path (sun_path is 108 bytes with its closing NUL).
MAX_SOCKET_PATH = 107


def too_long_helper_sockets(c: Config) -> list[tuple[str, str]]:
    """(service name, socket path) of each root helper whose socket path Linux would refuse
    (pure): a long data directory would otherwise surface as a helper that never answers."""
    found = []
    for spec in _managed(c):
        if ROOT_ONLY_VARIABLE in spec.get("environment", {}):
            path = json.loads(spec["environment"][SETTINGS_VARIABLE]).get("socket", "")
            if len(os.fsencode(path)) > MAX_SOCKET_PATH:
                found.append((spec["name"], path))
    return found


def service_bind_environment(s: Settings) -> dict:
    """Tells a service to listen on every interface when it is reached by host name."""
    return {BIND_VARIABLE: "0.0.0.0"} if s.hub.service_host else {}


def service_prefix(s: Settings, name: str) -> str:
    """Where the proxy serves the service, e.g. /services/mlflow/."""
    return f"{s.hub.base_url}services/{name}/"


def own_account(s: Settings, name: str, owns: list[str]) -> ServiceAccount:
    """The service's own system account, named apart from every hub user's (see service_account)."""
    return ServiceAccount(service_account_name(s.spawner.local.account_prefix, name), tuple(owns))


def _list(section, key: str) -> list:
    if key not in section:
        section[key] = []
    return section[key]


def add_managed_service(
    c: Config,
    s: Settings,
    name: str,
    command: list[str],
    service_settings: dict,
    *,
    display: bool = True,
    environment: dict | None = None,
    listen: bool = True,
    run_as: ServiceAccount | None = None,
    root_only: bool = False,
) -> dict:
    """A service the hub starts (and, if it listens, proxies at /services/<name>/); returns its spec.
    It gets `service_settings` as JSON in GPULAB_SERVICE_SETTINGS.

    `run_as`: when the hub runs as root, the service runs as this account, which owns its
    folders (see run_services_as_their_accounts); otherwise as the hub's user.
    `root_only`: the root part of a service that runs as its own account (e.g. the projects
    storage helper); a hub that is not root does not start it (pass_hub_environment).
    """
    service_environment = {SETTINGS_VARIABLE: json.dumps(service_settings), **service_bind_environment(s),
                           **(environment or {})}
    if root_only:
        service_environment[ROOT_ONLY_VARIABLE] = "1"
    if run_as is not None:
        service_environment[RUN_AS_VARIABLE] = json.dumps({"name": run_as.name, "owns": list(run_as.owns)})
    spec: dict[str, object] = {"name": name, "command": command, "environment": service_environment, "display": display}
    if listen:
        spec.update(url=service_url(s, name), oauth_no_confirm=True)
    _list(c.JupyterHub, "services").append(spec)
    return spec


# Services the hub starts keep only a few of its variables (JupyterHub's env_keep); these let
# a service that talks to Kubernetes (the scheduler's Jobs) find the cluster, in a pod or not.
KUBERNETES_VARIABLES = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


def pass_hub_environment(c: Config, environ, hub_pid: int, names=KUBERNETES_VARIABLES,
                         euid: int | None = None) -> None:
    """What only the running hub knows, for every service it starts: the hub's values of
    `names` (where set), the hub's pid, so the service ends with it (lifetime.end_with_hub),
    and, when the hub is root, the accounts services run as (run_services_as_their_accounts);
    when it is not, the root-only services are left out. Called in the hub's process as it
    loads its configuration."""
    passed = {name: environ[name] for name in names if environ.get(name)}
    for spec in c.JupyterHub.services if "services" in c.JupyterHub else []:
        if "command" in spec:
            spec["environment"] = {**passed, **spec.get("environment", {}), HUB_PID_VARIABLE: str(hub_pid)}
    if (os.geteuid() if euid is None else euid) == 0:
        run_services_as_their_accounts(c)
    elif "services" in c.JupyterHub:
        c.JupyterHub.services = [spec for spec in c.JupyterHub.services
                                 if ROOT_ONLY_VARIABLE not in spec.get("environment", {})]


def runs_as_own_account(environ=os.environ, uid: int | None = None) -> bool:
    """Whether this service process runs as the account it declared (`run_as`): the hub is root
    and started it so. False where it runs as the hub's user."""
    declared = environ.get(RUN_AS_VARIABLE)
    if not declared:
        return False
    try:
        return pwd.getpwuid(os.getuid() if uid is None else uid).pw_name == json.loads(declared)["name"]
    except KeyError:
        return False


def run_services_as_their_accounts(c: Config) -> None:
    """Start each service that declared `run_as` as its account, made ready first (root only:
    creates accounts, hands over folders), in its first folder, or in / if it owns none (the
    hub's own folder may be closed to it)."""
    declared = [spec for spec in _managed(c) if RUN_AS_VARIABLE in spec.get("environment", {})]
    if declared:
        _create_private(hub_database_file(c))
    for spec in declared:
        account = json.loads(spec["environment"][RUN_AS_VARIABLE])
        prepare(ServiceAccount(account["name"], tuple(account["owns"])))
        spec["user"] = account["name"]
        spec.setdefault("cwd", account["owns"][0] if account["owns"] else "/")


def _managed(c: Config) -> list[dict]:
    return [spec for spec in (c.JupyterHub.services if "services" in c.JupyterHub else []) if "command" in spec]


def hub_database_file(c: Config) -> str | None:
    """JupyterHub's SQLite file, if it keeps one (pure)."""
    url = c.JupyterHub.db_url if "db_url" in c.JupyterHub else ""
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


def _create_private(path: str | None) -> None:
    """JupyterHub creates its database after this, with the hub's umask (0644 at 022): a service
    account passing through the data directory could read it. An empty file is a new SQLite
    database, and SQLite keeps the file's mode."""
    if path and not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_NOFOLLOW, 0o600))


def python_module_command(module: str, *args: str) -> list[str]:
    """Run a module with the interpreter the hub runs on (gpulab's environment)."""
    return [sys.executable, "-m", module, *args]


def add_service_role(c: Config, name: str, scopes: list[str]) -> None:
    """The service's own least-privilege role."""
    _list(c.JupyterHub, "load_roles").append(
        {"name": f"{name}-service", "description": f"what the {name} service may do", "scopes": scopes, "services": [name]}
    )


def _user_role(c: Config) -> dict:
    roles = _list(c.JupyterHub, "load_roles")
    for role in roles:
        if role.get("name") == "user":
            return role
    role = {"name": "user", "description": "Standard user privileges", "scopes": ["self"]}
    roles.append(role)
    return role


def add_user_scopes(c: Config, scopes: list[str]) -> None:
    """Scopes every user gets, through JupyterHub's "user" role."""
    role = _user_role(c)
    for scope in scopes:
        if scope not in role["scopes"]:
            role["scopes"].append(scope)


def grant_users_access(c: Config, name: str) -> None:
    """Every signed-in user may open the service (it decides what each one sees)."""
    add_user_scopes(c, [f"access:services!service={name}"])


DEFAULT_SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server"]


def grant_server_tokens_access(c: Config, name: str) -> None:
    """A user server's API token (JUPYTERHUB_API_TOKEN) may call the service as that user."""
    if "server_token_scopes" not in c.Spawner:
        c.Spawner.server_token_scopes = list(DEFAULT_SERVER_TOKEN_SCOPES)
    scope = f"access:services!service={name}"
    if scope not in c.Spawner.server_token_scopes:
        c.Spawner.server_token_scopes.append(scope)


def share_navigation(c: Config) -> None:
    """Give every gpulab service the hub's final navigation links, for its pages' menu bar."""
    nav = json.dumps(c.JupyterHub.template_vars.get("gpulab_nav", []) if "template_vars" in c.JupyterHub else [])
    for spec in c.JupyterHub.services if "services" in c.JupyterHub else []:
        environment = spec.get("environment", {})
        if SETTINGS_VARIABLE in environment:
            environment[NAV_VARIABLE] = nav
