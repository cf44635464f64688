"""The SSH feature's `apply_config` step: the gateway service, its role, the page's link, and
the seed each user server's endpoint receives. Pure: settings in, traitlets config out."""

from __future__ import annotations

from urllib.parse import urlparse

from traitlets.config import Config

from gpulab.extensions.service.config import (
    add_managed_service,
    add_service_role,
    grant_server_tokens_access,
    grant_users_access,
    own_account,
    python_module_command,
    service_prefix,
)
from gpulab.extensions.service.service_account import ServiceAccount
from gpulab.hub_config.registry import Extension, NavLink

from .storage import audit_folder, ssh_database_url, ssh_folder
from .trust import SEED_VARIABLE, EndpointSeed

SERVICE = "ssh"
GATEWAY_MODULE = "gpulab.extensions.ssh.service"
# tokens: a short-lived token per connection, scoped to the one server, minted for the
# connecting user; the hub refuses it when that user may not access the server, so the
# hub's own rules (ownership, shares, roles) decide who reaches what.
# read:servers + servers: find the server and start a stopped one for its owner.
GATEWAY_SCOPES = ["tokens", "read:users:name", "read:servers", "servers"]


# Below this port only root may listen (ip_unprivileged_port_start's default).
FIRST_UNPRIVILEGED_PORT = 1024


def ssh_paths(values: dict) -> dict:
    return {
        "host_key": str(ssh_folder(values) / "ssh_host_ed25519_key"),
        "master_secret": str(ssh_folder(values) / "endpoint-master-secret"),
        "audit_log": str(audit_folder(values) / "audit.log"),
    }


def gateway_account(values: dict) -> ServiceAccount | None:
    """The account the gateway runs as when the hub is root: its own, owning its two folders
    (keys, secrets and database; audit log), which needs nothing else of root's. None (the
    hub's user) only for a port below 1024, which an account cannot listen on."""
    if values["ssh"]["port"] < FIRST_UNPRIVILEGED_PORT:
        return None
    return own_account(values, SERVICE, [str(ssh_folder(values)), str(audit_folder(values))])


def listen_address(values: dict) -> str:
    return values["ssh"]["bind_address"] or values["hub"]["ip"]


def public_host(values: dict) -> str:
    """The host name users put in ~/.ssh/config."""
    ssh, hub = values["ssh"], values["hub"]
    if ssh["public_host"]:
        return ssh["public_host"]
    if hub["public_url"]:
        return urlparse(hub["public_url"]).hostname or "127.0.0.1"
    address = listen_address(values)
    return "127.0.0.1" if address in ("", "0.0.0.0", "::") else address


def servers_url(values: dict) -> str:
    """Where the gateway reaches user servers: the hub's proxy, unless set."""
    if values["ssh"]["servers_url"]:
        return values["ssh"]["servers_url"]
    hub = values["hub"]
    scheme = "https" if hub["tls"]["cert_file"] else "http"
    host = "127.0.0.1" if hub["ip"] in ("", "0.0.0.0", "::") else hub["ip"]
    return f"{scheme}://{host}:{hub['port']}"


def gateway_settings(values: dict) -> dict:
    """What the gateway process needs, handed over as JSON (see add_managed_service)."""
    ssh = values["ssh"]
    return {
        **{key: ssh[key] for key in ("port", "allow_token_password", "start_stopped_servers",
                                      "max_failed_attempts", "failure_window", "lockout")},
        "bind_address": listen_address(values),
        "public_host": public_host(values),
        "servers_url": servers_url(values),
        "start_timeout": values["spawner"]["start_timeout"],
        "database_url": ssh_database_url(values),
        "log_level": values["hub"]["log_level"],
        **ssh_paths(values),
    }


def update_ssh(values: dict, c: Config) -> None:
    add_managed_service(c, values, SERVICE, python_module_command(GATEWAY_MODULE), gateway_settings(values),
                        display=False, run_as=gateway_account(values))
    add_service_role(c, SERVICE, list(GATEWAY_SCOPES))
    grant_users_access(c, SERVICE)
    grant_server_tokens_access(c, SERVICE)  # `gpulab ssh-key add` works from a server's terminal


def nav_links(values: dict) -> list[NavLink]:
    return [NavLink("SSH keys", service_prefix(values, SERVICE))]


def server_environment(values: dict) -> dict:
    """The seed each server's SSH endpoint derives its credentials from."""
    return {SEED_VARIABLE: EndpointSeed(ssh_paths(values)["master_secret"])}


EXTENSION = Extension("ssh", 30, update_ssh, enabled=lambda values: values["ssh"]["enabled"], nav_links=nav_links,
                      server_environment=server_environment)
