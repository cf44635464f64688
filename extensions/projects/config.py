"""The projects feature's `apply_config` step (pure: reads settings, writes traitlets config).

It registers the "projects" service with its least-privilege role, lets every user open it
and share their own servers, adds the "Projects" navigation link, and installs two hooks
in the hub: one that prepares project folders before each local spawn, and one that keeps
project groups when an identity provider replaces a user's groups at sign-in.

When the hub is root, the service runs as its own account, owning its folder and database
(database.py), and the folders' system groups, ACLs, owners and links are made by the root
helper "projects-storage" (storage/helper.py), which only a root hub starts.
"""

from __future__ import annotations

from traitlets.config import Config

from gpulab.hub_config.registry import Extension, NavLink
from gpulab.hub_config.typed_settings import Settings
from gpulab.hub_config.services.config import (
    add_managed_service,
    add_service_role,
    add_user_scopes,
    grant_server_tokens_access,
    grant_users_access,
    own_account,
    python_module_command,
    service_prefix,
)

from .database import projects_database_url, projects_folder
from .service_settings import ProjectsServiceSettings, StorageHelperSettings, StorageSettings
from .storage import FOLDER_BACKENDS
from .storage.helper import socket_path

SERVICE = "projects"
SERVICE_MODULE = "gpulab.extensions.projects.service"
HELPER = "projects-storage"
HELPER_MODULE = "gpulab.extensions.projects.storage.helper"

# The service's own role: who people are, the project groups, taking back shares of members who left.
SERVICE_SCOPES = ["read:users", "admin:groups", "users:shares"]
# What a user needs to share their own server with the project's members through the hub.
USER_SCOPES = ["shares!user", "read:users:name"]
# What the service may do with a user's sign-in (its pages share servers as that user).
OAUTH_SCOPES = ["shares!user", "read:shares!user", "access:servers!user", "read:users:name"]


def group_prefix(s: Settings) -> str:
    """`projects.local.group_prefix`, or the account prefix followed by "p-"."""
    return s.projects.local.group_prefix or s.spawner.local.account_prefix + "p-"


def storage_settings(s: Settings) -> StorageSettings:
    """What the service and the spawn hook need to find folders, accounts and homes."""
    local = s.spawner.local
    return StorageSettings(backend=s.spawner.backend, root=s.projects.local.root, group_prefix=group_prefix(s),
                           account_prefix=local.account_prefix, home_root=local.home_root, data_dir=s.hub.data_dir)


def service_settings(s: Settings) -> ProjectsServiceSettings:
    return ProjectsServiceSettings(
        database_url=projects_database_url(s),
        log_level=s.hub.log_level,
        creators=s.projects.creators,
        reconcile_interval=s.projects.reconcile_interval,
        storage=storage_settings(s),
        storage_helper=str(socket_path(s.hub.data_dir)),
    )


def helper_settings(s: Settings) -> StorageHelperSettings:
    return StorageHelperSettings(
        storage=storage_settings(s),
        socket=str(socket_path(s.hub.data_dir)),
        client=own_account(s, SERVICE, []).name,
        log_level=s.hub.log_level,
    )


def update_projects(s: Settings, c: Config) -> None:
    # display=False: the "Projects" link (nav_links) replaces the hub's Services menu entry
    spec = add_managed_service(c, s, SERVICE, python_module_command(SERVICE_MODULE), service_settings(s).as_dict(),
                               display=False, run_as=own_account(s, SERVICE, [str(projects_folder(s))]))
    spec["oauth_client_allowed_scopes"] = list(OAUTH_SCOPES)
    if s.spawner.backend in FOLDER_BACKENDS:
        # As root only: the service's account cannot make groups, ACLs or links; no HTTP, no hub role.
        add_managed_service(c, s, HELPER, python_module_command(HELPER_MODULE), helper_settings(s).as_dict(),
                            display=False, listen=False, root_only=True)
    add_service_role(c, SERVICE, list(SERVICE_SCOPES))
    grant_users_access(c, SERVICE)
    grant_server_tokens_access(c, SERVICE)
    add_user_scopes(c, USER_SCOPES)


def nav_links(s: Settings) -> list[NavLink]:
    return [NavLink("Projects", service_prefix(s, SERVICE))]


def server_args(s: Settings) -> list[str]:
    # A server caches the hub's answer about who may open it; sharing changes reach it this fast.
    return [f"--HubOAuth.cache_max_age={s.projects.sharing_check_seconds}"]


def pre_spawn_hook(s: Settings):
    from .spawn_hook import ProjectFolders

    return ProjectFolders(projects_database_url(s), storage_settings(s))


def post_auth_hook(s: Settings):
    from .sign_in import ProjectGroupsAtSignIn

    return ProjectGroupsAtSignIn(projects_database_url(s))


EXTENSION = Extension("projects", 40, update_projects, nav_links=nav_links, server_args=server_args,
                      pre_spawn_hook=pre_spawn_hook, post_auth_hook=post_auth_hook)
