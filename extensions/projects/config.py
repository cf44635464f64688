"""The projects feature's `apply_config` step (pure: reads settings, writes traitlets config).

It registers the "projects" service with its least-privilege role, lets every user open it
and share their own servers, adds the "Projects" navigation link, and installs two hooks
in the hub: one that prepares project folders before each local spawn, and one that keeps
project groups when an identity provider replaces a user's groups at sign-in.
"""

from __future__ import annotations

from traitlets.config import Config

from gpulab.db import database_url
from gpulab.extensions.service.config import (
    add_managed_service,
    add_service_role,
    add_user_scopes,
    grant_server_tokens_access,
    grant_users_access,
    python_module_command,
    service_prefix,
)

SERVICE = "projects"
SERVICE_MODULE = "gpulab.extensions.projects.service"

# The service's own role: who people are, the project groups, taking back shares of members who left.
SERVICE_SCOPES = ["read:users", "admin:groups", "users:shares"]
# What a user needs to share their own server with the project's members through the hub.
USER_SCOPES = ["shares!user", "read:users:name"]
# What the service may do with a user's sign-in (its pages share servers as that user).
OAUTH_SCOPES = ["shares!user", "read:shares!user", "access:servers!user", "read:users:name"]


def group_prefix(values: dict) -> str:
    """`projects.local.group_prefix`, or the account prefix followed by "p-"."""
    return values["projects"]["local"]["group_prefix"] or values["spawner"]["local"]["account_prefix"] + "p-"


def storage_settings(values: dict) -> dict:
    """What the service and the spawn hook need to find folders, accounts and homes."""
    local = values["spawner"]["local"]
    return {
        "backend": values["spawner"]["backend"],
        "root": values["projects"]["local"]["root"],
        "group_prefix": group_prefix(values),
        "account_prefix": local["account_prefix"],
        "home_root": local["home_root"],
        "data_dir": values["hub"]["data_dir"],
    }


def service_settings(values: dict) -> dict:
    return {
        "database_url": database_url(values),
        "log_level": values["hub"]["log_level"],
        "creators": list(values["projects"]["creators"]),
        "reconcile_interval": values["projects"]["reconcile_interval"],
        "storage": storage_settings(values),
    }


def update_projects(values: dict, c: Config) -> None:
    from gpulab.hub_config.apply import add_nav_link, public_url

    from .sign_in import ProjectGroupsAtSignIn
    from .spawn_hook import ProjectFolders

    # display=False: the "Projects" link below replaces the hub's Services menu entry
    spec = add_managed_service(c, values, SERVICE, python_module_command(SERVICE_MODULE), service_settings(values),
                               display=False)
    spec["oauth_client_allowed_scopes"] = list(OAUTH_SCOPES)
    add_service_role(c, SERVICE, list(SERVICE_SCOPES))
    grant_users_access(c, SERVICE)
    grant_server_tokens_access(c, SERVICE)
    add_user_scopes(c, USER_SCOPES)
    add_nav_link(c, "Projects", service_prefix(values, SERVICE))

    # `gpulab project ...` works in a server's terminal: the hub's address, and its token (set by the hub).
    if "environment" not in c.Spawner:
        c.Spawner.environment = {}
    if "GPULAB_URL" not in c.Spawner.environment:
        c.Spawner.environment["GPULAB_URL"] = public_url(values)

    # A server caches the hub's answer about who may open it; sharing changes reach it this fast.
    if "args" not in c.Spawner:
        c.Spawner.args = []
    c.Spawner.args.append(f"--HubOAuth.cache_max_age={values['projects']['sharing_check_seconds']}")

    previous_spawn_hook = c.Spawner.pre_spawn_hook if "pre_spawn_hook" in c.Spawner else None
    c.Spawner.pre_spawn_hook = ProjectFolders(database_url(values), storage_settings(values), previous_spawn_hook)
    previous_auth_hook = c.Authenticator.post_auth_hook if "post_auth_hook" in c.Authenticator else None
    c.Authenticator.post_auth_hook = ProjectGroupsAtSignIn(database_url(values), previous_auth_hook)
