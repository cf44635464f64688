"""The SSH feature's `apply_config` step: the gateway service, its role, the page's link, and
the seed each user server's endpoint receives. Pure: settings in, traitlets config out."""

from __future__ import annotations

from urllib.parse import urlparse

from traitlets.config import Config

from gpulab.hub_config.services.config import (
    add_managed_service,
    add_service_role,
    grant_server_tokens_access,
    grant_users_access,
    own_account,
    python_module_command,
    service_prefix,
)
from gpulab.hub_config.services.service_account import ServiceAccount
from gpulab.hub_config.registry import Extension, NavLink
from gpulab.hub_config.typed_settings import Settings

from .service_settings import GatewayServiceSettings
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


def ssh_paths(s: Settings) -> dict:
    return {
        "host_key": str(ssh_folder(s) / "ssh_host_ed25519_key"),
        "master_secret": str(ssh_folder(s) / "endpoint-master-secret"),
        "audit_log": str(audit_folder(s) / "audit.log"),
    }


def gateway_account(s: Settings) -> ServiceAccount | None:
    """The account the gateway runs as when the hub is root: its own, owning its two folders
    (keys, secrets and database; audit log), which needs nothing else of root's. None (the
    hub's user) only for a port below 1024, which an account cannot listen on."""
    if s.ssh.port < FIRST_UNPRIVILEGED_PORT:
        return None
    return own_account(s, SERVICE, [str(ssh_folder(s)), str(audit_folder(s))])


def listen_address(s: Settings) -> str:
    return s.ssh.bind_address or s.hub.ip


def public_host(s: Settings) -> str:
    """The host name users put in ~/.ssh/config."""
    ssh, hub = s.ssh, s.hub
    if ssh.public_host:
        return ssh.public_host
    if hub.public_url:
        return urlparse(hub.public_url).hostname or "127.0.0.1"
    address = listen_address(s)
    return "127.0.0.1" if address in ("", "0.0.0.0", "::") else address


def servers_url(s: Settings) -> str:
    """Where the gateway reaches user servers: the hub's proxy, unless set."""
    if s.ssh.servers_url:
        return s.ssh.servers_url
    hub = s.hub
    scheme = "https" if hub.tls.cert_file else "http"
    host = "127.0.0.1" if hub.ip in ("", "0.0.0.0", "::") else hub.ip
    return f"{scheme}://{host}:{hub.port}"


def gateway_settings(s: Settings) -> dict:
    """What the gateway process needs, handed over as JSON (see add_managed_service)."""
    ssh = s.ssh
    return GatewayServiceSettings(
        port=ssh.port, allow_token_password=ssh.allow_token_password, start_stopped_servers=ssh.start_stopped_servers,
        max_failed_attempts=ssh.max_failed_attempts, failure_window=ssh.failure_window, lockout=ssh.lockout,
        bind_address=listen_address(s),
        public_host=public_host(s),
        servers_url=servers_url(s),
        start_timeout=s.spawner.start_timeout,
        database_url=ssh_database_url(s),
        log_level=s.hub.log_level,
        **ssh_paths(s),
    ).as_dict()


def update_ssh(s: Settings, c: Config) -> None:
    add_managed_service(c, s, SERVICE, python_module_command(GATEWAY_MODULE), gateway_settings(s),
                        display=False, run_as=gateway_account(s))
    add_service_role(c, SERVICE, list(GATEWAY_SCOPES))
    grant_users_access(c, SERVICE)
    grant_server_tokens_access(c, SERVICE)  # `gpulab ssh-key add` works from a server's terminal


def nav_links(s: Settings) -> list[NavLink]:
    return [NavLink("SSH keys", service_prefix(s, SERVICE))]


def server_environment(s: Settings) -> dict:
    """The seed each server's SSH endpoint derives its credentials from."""
    return {SEED_VARIABLE: EndpointSeed(ssh_paths(s)["master_secret"])}


def enabled(s: Settings) -> bool:
    return s.ssh.enabled


EXTENSION = Extension("ssh", 30, update_ssh, enabled=enabled, nav_links=nav_links,
                      server_environment=server_environment)
