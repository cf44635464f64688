"""Turn validated settings into JupyterHub's traitlets config.

`apply_config(s, c)` is pure: it reads only the typed settings and writes only `c`. Each concern of the
hub itself is one small `update_*` step so it can be tested against a bare `traitlets.config.Config()`; the
extensions (registry.py) add theirs, and what several of them contribute to one setting
(servers' arguments, environment, hooks, navigation) is composed here once.
"""

from __future__ import annotations

from importlib import resources

from traitlets.config import Config

from gpulab.db import database_url
from gpulab.hub_config.services.config import share_navigation
from gpulab.hub_config.services.service_account import service_account_name
from gpulab.spawner.backends import backend

from . import authenticators
from .hooks import AuthHooks, SpawnHooks
from .registry import Extension, installed_extensions
from .typed_settings import Settings
from .urls import data_path, public_url, server_hub_url

LOCAL_AUTHENTICATOR = "gpulab.hub_config.authenticators.LocalAccountsAuthenticator"
SUPERVISED_TRAEFIK = "gpulab.hub_config.proxy.SupervisedTraefikProxy"
OWN_ACCOUNT_CHP = "gpulab.hub_config.chp_proxy.OwnAccountCHP"
MAX_HEADER_BYTES = 48 * 1024
PROXY_STOP_GRACE = "2s"  # traefik's graceTimeOut on its entry points (see update_proxy)
TRAEFIK_API_ENTRYPOINT = "auth_api"
OAUTH_CLASSES = {
    "github": "oauthenticator.github.GitHubOAuthenticator",
    "gitlab": "oauthenticator.gitlab.GitLabOAuthenticator",
    "google": "oauthenticator.google.GoogleOAuthenticator",
    "oidc": "oauthenticator.generic.GenericOAuthenticator",
}
OIDC_DEFAULT_SCOPES = ["openid", "profile", "email"]


def update_hub(s: Settings, c: Config) -> None:
    hub = s.hub
    scheme = "https" if hub.tls.cert_file else "http"
    c.JupyterHub.bind_url = f"{scheme}://{hub.ip}:{hub.port}{hub.base_url}"
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = hub.internal_port
    c.JupyterHub.db_url = hub.db_url or f"sqlite:///{data_path(s, 'jupyterhub.sqlite')}"
    c.JupyterHub.cookie_secret_file = data_path(s, "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = data_path(s, "jupyterhub.pid")
    c.JupyterHub.log_level = hub.log_level
    c.JupyterHub.cleanup_servers = hub.stop_servers_on_exit
    c.JupyterHub.authenticate_prometheus = not hub.metrics_public
    if hub.tls.cert_file:
        c.JupyterHub.ssl_cert = hub.tls.cert_file
        c.JupyterHub.ssl_key = hub.tls.key_file
    # A copy of the hub's log in the data directory, next to everything else it wrote.
    c.JupyterHub.logging_config = {
        "handlers": {
            "gpulab_file": {
                "class": "logging.FileHandler",
                "formatter": "console",
                "filename": data_path(s, "logs", "hub.log"),
            }
        },
        # An application logs under its class's name: stock JupyterHub (the Helm chart's hub) and
        # the subclass `gpulab up` runs (hub_app.GpulabHub).
        "loggers": {name: {"handlers": ["console", "gpulab_file"]} for name in ("JupyterHub", "GpulabHub")},
    }


def update_proxy(s: Settings, c: Config) -> None:
    proxy = s.proxy
    api_url = f"http://127.0.0.1:{proxy.api_port}"
    if proxy.api_url:
        # a proxy that runs apart (its own pod); the token comes from CONFIGPROXY_AUTH_TOKEN
        c.JupyterHub.proxy_class = "configurable-http-proxy"
        c.ConfigurableHTTPProxy.should_start = False
        c.ConfigurableHTTPProxy.api_url = proxy.api_url.rstrip("/")
    elif proxy.kind == "traefik":
        # traefik_file, restarted when it dies (JupyterHub does this for CHP only)
        c.JupyterHub.proxy_class = SUPERVISED_TRAEFIK
        c.TraefikFileProviderProxy.should_start = True
        c.TraefikFileProviderProxy.traefik_api_url = api_url
        c.TraefikFileProviderProxy.traefik_api_entrypoint = TRAEFIK_API_ENTRYPOINT
        c.TraefikFileProviderProxy.static_config_file = data_path(s, "proxy", "traefik.toml")
        c.TraefikFileProviderProxy.dynamic_config_file = data_path(s, "proxy", "rules.toml")
        c.TraefikFileProviderProxy.traefik_log_level = "WARN"
        # Every route change is applied at once (providersThrottleDuration "0s", the package's
        # default, kept on purpose). Throttled at 0.5 s, traefik's CPU for 50 users spawning at once
        # halved (2.1 -> 1.2 s; their p95 ~0.3 s better), but a spawn that came within the throttle
        # of another route change (a stop, another spawn) waited for it: the spawn benchmark's
        # median went from 0.30 to 0.72 s.
        # as root, traefik runs as its own account (hub_config/proxy.py)
        c.SupervisedTraefikProxy.run_as = service_account_name(s.spawner.local.account_prefix, "proxy")
        # Headers past tornado's 64 KiB make the hub and servers drop the connection, which
        # traefik turns into a 502; refuse them at traefik instead, a 431 (Go adds 4 KiB slack).
        entrypoint = "https" if s.hub.tls.cert_file else "http"
        # At the hub's stop, traefik waits for requests in flight up to its graceTimeOut (10 s
        # by default, and jupyterhub-traefik-proxy kills it at 10 s): an idle connection kept
        # open held every stop for the full 10 s. Requests in flight still get PROXY_STOP_GRACE.
        stopping = {"lifeCycle": {"graceTimeOut": PROXY_STOP_GRACE}}
        # A header named like another but for its punctuation (X_Forwarded_Host, X.Forwarded.Host)
        # is one and the same variable to a WSGI application (MLflow's Flask server): traefik drops
        # them, so none can pass for a header traefik sets (CVE-2026-88879).
        c.TraefikFileProviderProxy.extra_static_config = {"entryPoints": {
            entrypoint: {"http": {"maxHeaderBytes": MAX_HEADER_BYTES, "aliasHeadersStrategy": "delete"},
                         "transport": stopping},
            TRAEFIK_API_ENTRYPOINT: {"http": {"aliasHeadersStrategy": "delete"}, "transport": stopping}}}
    else:
        c.JupyterHub.proxy_class = OWN_ACCOUNT_CHP
        c.ConfigurableHTTPProxy.should_start = True
        c.ConfigurableHTTPProxy.api_url = api_url
        # JupyterHub restarts a CHP that died; look every second rather than every 5.
        c.ConfigurableHTTPProxy.check_running_interval = 1
        c.ConfigurableHTTPProxy.pid_file = data_path(s, "proxy", "chp.pid")
        # as root, CHP runs as the proxy's account too (hub_config/chp_proxy.py)
        c.OwnAccountCHP.run_as = service_account_name(s.spawner.local.account_prefix, "proxy")


def update_auth(s: Settings, c: Config) -> None:
    auth = s.auth
    c.Authenticator.admin_users = set(auth.admin_users)
    c.Authenticator.allowed_users = set(auth.allowed_users)
    if auth.type == "local":
        _update_local_auth(s, c)
    else:
        _update_oauth(s, c)


def _update_local_auth(s: Settings, c: Config) -> None:
    local = s.auth.local
    c.JupyterHub.authenticator_class = LOCAL_AUTHENTICATOR
    # Who may sign in is decided by NativeAuthenticator's approval, not by an allow list.
    c.NativeAuthenticator.allow_all = True
    c.NativeAuthenticator.enable_signup = local.enable_signup
    c.NativeAuthenticator.open_signup = local.open_signup
    c.NativeAuthenticator.minimum_password_length = local.minimum_password_length
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = local.allowed_failed_logins
    c.NativeAuthenticator.seconds_before_next_try = local.seconds_before_next_try
    c.LocalAccountsAuthenticator.initial_admin_password_file = data_path(s, "initial-admin-password")


def _update_oauth(s: Settings, c: Config) -> None:
    auth, oauth = s.auth, s.auth.oauth
    kind = auth.type
    c.JupyterHub.authenticator_class = OAUTH_CLASSES[kind]
    c.OAuthenticator.client_id = oauth.client_id
    if oauth.client_secret:
        c.OAuthenticator.client_secret = oauth.client_secret
    c.OAuthenticator.oauth_callback_url = oauth.callback_url or public_url(s) + "hub/oauth_callback"
    c.OAuthenticator.allowed_groups = set(oauth.allowed_groups)
    c.OAuthenticator.admin_groups = set(oauth.admin_groups)
    c.OAuthenticator.allow_all = oauth.allow_all
    c.OAuthenticator.manage_groups = oauth.manage_groups
    if oauth.scopes:
        c.OAuthenticator.scope = list(oauth.scopes)
    if kind == "oidc":
        oidc = oauth.oidc
        c.GenericOAuthenticator.authorize_url = oidc.authorize_url
        c.GenericOAuthenticator.token_url = oidc.token_url
        c.GenericOAuthenticator.userdata_url = oidc.userdata_url
        c.GenericOAuthenticator.username_claim = oidc.username_claim
        c.GenericOAuthenticator.auth_state_groups_key = f"oauth_user.{oidc.groups_claim}"
        c.GenericOAuthenticator.login_service = oidc.login_service
        if not oauth.scopes:
            c.GenericOAuthenticator.scope = list(OIDC_DEFAULT_SCOPES)
    elif kind == "github":
        c.GitHubOAuthenticator.allowed_organizations = set(oauth.github.organizations)
        c.GitHubOAuthenticator.populate_teams_in_auth_state = oauth.manage_groups
        c.GitHubOAuthenticator.auth_state_groups_key = authenticators.github_team_groups
    elif kind == "gitlab":
        c.GitLabOAuthenticator.gitlab_url = oauth.gitlab.url
        c.GitLabOAuthenticator.allowed_gitlab_groups = set(oauth.gitlab.groups)
    elif kind == "google":
        c.GoogleOAuthenticator.hosted_domain = list(oauth.google.hosted_domains)


def update_spawner(s: Settings, c: Config) -> None:
    spawner = s.spawner
    chosen = backend(spawner.backend)
    c.JupyterHub.spawner_class = chosen.spawner_class
    c.Spawner.default_url = spawner.default_url
    c.Spawner.start_timeout = spawner.start_timeout
    c.Spawner.http_timeout = spawner.http_timeout
    c.JupyterHub.allow_named_servers = spawner.named_servers.enabled
    c.JupyterHub.named_server_limit_per_user = spawner.named_servers.limit_per_user
    # typed: frozen, so traitlets' copies of them are themselves
    c.ProfileSpawnerMixin.profile_settings = s.profiles
    c.ProfileSpawnerMixin.environment_settings = s.environments
    c.ProfileSpawnerMixin.quota_settings = s.quotas
    c.ProfileSpawnerMixin.database_url = database_url(s)
    c.ProfileSpawnerMixin.inventory_class = spawner.local.gpu_inventory
    chosen.configure(s, c)  # the backend's own traits (spawner/backends/<name>/)


def update_templates(s: Settings, c: Config) -> None:
    """gpulab's page templates extend the hub's; extensions add navigation links."""
    c.JupyterHub.template_paths = [str(resources.files("gpulab.hub_config") / "templates")]
    c.JupyterHub.template_vars = {"gpulab_nav": []}
    if s.auth.type == "local":
        # Admins see "Sign-ups" with the number waiting (NativeAuthenticator's /hub/authorize).
        c.JupyterHub.template_vars["gpulab_pending_signups"] = authenticators.pending_signups


CORE_STEPS = [update_hub, update_proxy, update_auth, update_spawner, update_templates]
SINGLEUSER_ARGS = ["--ServerApp.jpserver_extensions=gpulab.spawner.singleuser=True"]


def apply_config(s: Settings, c: Config, extensions: list[Extension] | None = None) -> Config:
    """Apply the hub's steps and every extension's to `c` and return it."""
    extensions = [e for e in (installed_extensions() if extensions is None else extensions) if e.enabled(s)]
    for step in CORE_STEPS:
        step(s, c)
    for extension in extensions:
        extension.update(s, c)
    compose_servers(s, c, extensions)
    compose_hooks(s, c, extensions)
    c.JupyterHub.template_vars["gpulab_nav"] = [
        {"label": link.label, "url": link.url} for e in extensions for link in e.nav_links(s)]
    share_navigation(c)  # last: services' pages show every link
    return c


def compose_servers(s: Settings, c: Config, extensions: list[Extension]) -> None:
    """Every server's arguments and environment: gpulab's, each extension's, then the admin's
    `spawner.environment`, which wins."""
    c.Spawner.args = SINGLEUSER_ARGS + [arg for e in extensions for arg in e.server_args(s)]
    # Where gpulab's CLI in a server finds the hub (with the server's own token).
    environment = {"GPULAB_URL": server_hub_url(s)}
    for extension in extensions:
        environment.update(extension.server_environment(s))
    admins = dict(s.spawner.environment)
    c.Spawner.environment = {**environment, **admins}
    # The admin's variables are expanded on Kubernetes as KubeSpawner does ("{username}"); gpulab's are literal.
    c.GpulabKubeSpawner.literal_environment = sorted(set(environment) - set(admins))


def compose_hooks(s: Settings, c: Config, extensions: list[Extension]) -> None:
    """One pre-spawn and one post-auth hook running the extensions' in order, after any hook
    set on `c` before (by an embedding config)."""
    for section, trait, contributed, composed in (
            ("Spawner", "pre_spawn_hook", lambda e: e.pre_spawn_hook(s), SpawnHooks),
            ("Authenticator", "post_auth_hook", lambda e: e.post_auth_hook(s), AuthHooks)):
        earlier = [c[section][trait]] if trait in c[section] else []
        hooks = earlier + [hook for hook in map(contributed, extensions) if hook is not None]
        if hooks:
            c[section][trait] = hooks[0] if len(hooks) == 1 else composed(hooks)
