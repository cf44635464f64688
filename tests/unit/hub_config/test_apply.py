"""apply_config against a bare traitlets Config: settings in, JupyterHub config out."""

from __future__ import annotations

from traitlets.config import Config

from gpulab.hub_config.apply import apply_config, update_auth, update_templates
from gpulab.hub_config.authenticators import github_team_groups
from gpulab.hub_config.registry import Extension, NavLink
from gpulab.hub_config.settings import deep_merge
from gpulab.hub_config.typed_settings import Settings
from gpulab.hub_config.urls import public_url, server_hub_url
from tests.support.settings import typed_settings


def settings(**sections) -> Settings:
    return typed_settings(deep_merge({"hub": {"data_dir": "/srv/gpulab/data"}}, sections))


def test_defaults_give_a_local_hub_with_traefik_and_local_accounts():
    c = apply_config(settings(), Config())
    assert c.JupyterHub.bind_url == "http://0.0.0.0:8000/"
    assert c.JupyterHub.hub_ip == "127.0.0.1" and c.JupyterHub.hub_port == 8081
    assert c.JupyterHub.db_url == "sqlite:////srv/gpulab/data/jupyterhub.sqlite"
    assert c.JupyterHub.cookie_secret_file == "/srv/gpulab/data/jupyterhub_cookie_secret"
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.proxy_class == "gpulab.hub_config.proxy.SupervisedTraefikProxy"
    assert c.TraefikFileProviderProxy.traefik_api_url == "http://127.0.0.1:8099"
    assert c.TraefikFileProviderProxy.dynamic_config_file == "/srv/gpulab/data/proxy/rules.toml"
    # oversized headers are a 431 from traefik, below what tornado (hub, servers) would drop as a 502
    # and a stopping traefik waits 2 s (not its 10 s) for requests in flight, on both entry points,
    # which drop headers whose names alias another's (X_Forwarded_Host for X-Forwarded-Host)
    stopping = {"lifeCycle": {"graceTimeOut": "2s"}}
    assert c.TraefikFileProviderProxy.extra_static_config == {"entryPoints": {
        "http": {"http": {"maxHeaderBytes": 49152, "aliasHeadersStrategy": "delete"}, "transport": stopping},
        "auth_api": {"http": {"aliasHeadersStrategy": "delete"}, "transport": stopping}}}
    assert c.TraefikFileProviderProxy.traefik_api_entrypoint == "auth_api"
    # every route change at once: throttled, a spawn waited for the throttle after another change
    assert "traefik_providers_throttle_duration" not in c.TraefikFileProviderProxy
    assert c.JupyterHub.authenticator_class.endswith("LocalAccountsAuthenticator")
    assert c.NativeAuthenticator.open_signup is False
    assert c.LocalAccountsAuthenticator.initial_admin_password_file == "/srv/gpulab/data/initial-admin-password"
    assert c.JupyterHub.spawner_class == "gpulab.spawner.backends.local.spawner.GpulabLocalSpawner"
    assert c.Spawner.default_url == "/lab"
    assert c.Spawner.args[0] == "--ServerApp.jpserver_extensions=gpulab.spawner.singleuser=True"
    # JupyterLab's scheduler UI talks to gpulab's scheduler, not to a scheduler of its own
    assert c.Spawner.args[1:3] == ["--ServerApp.jpserver_extensions=jupyter_scheduler=False",
                                   "--ServerApp.jpserver_extensions=gpulab.extensions.scheduler.lab=True"]
    assert c.LocalSpawner.log_dir == "/srv/gpulab/data/logs/servers"
    assert c.JupyterHub.logging_config["handlers"]["gpulab_file"]["filename"] == "/srv/gpulab/data/logs/hub.log"


def test_tls_base_url_and_ports():
    values = settings(hub={"ip": "10.0.0.5", "port": 443, "base_url": "/lab/", "internal_port": 9000,
                           "tls": {"cert_file": "/etc/c.crt", "key_file": "/etc/c.key"}})
    c = apply_config(values, Config())
    assert c.JupyterHub.bind_url == "https://10.0.0.5:443/lab/"
    assert (c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key) == ("/etc/c.crt", "/etc/c.key")
    assert c.JupyterHub.hub_port == 9000
    assert public_url(values) == "https://10.0.0.5:443/lab/"


def test_public_url_wins_and_wildcard_addresses_print_as_loopback():
    assert public_url(settings(hub={"public_url": "https://gpulab.example.com/"})) == "https://gpulab.example.com/"
    assert public_url(settings(hub={"port": 8080})) == "http://127.0.0.1:8080/"


def test_configurable_http_proxy():
    c = apply_config(settings(proxy={"kind": "configurable-http-proxy", "api_port": 9999}), Config())
    assert c.JupyterHub.proxy_class == "gpulab.hub_config.chp_proxy.OwnAccountCHP"
    assert c.OwnAccountCHP.run_as == "gpulab_svc-proxy"  # as root; JupyterHub's own class otherwise
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:9999"
    assert c.ConfigurableHTTPProxy.should_start is True
    assert c.ConfigurableHTTPProxy.check_running_interval == 1  # a dead CHP is restarted within a second


def test_oidc_maps_groups_from_the_claim():
    values = settings(auth={"type": "oidc", "admin_users": ["alice"], "oauth": {
        "client_id": "gpulab", "allowed_groups": ["ml"], "admin_groups": ["ml-admins"],
        "oidc": {"authorize_url": "https://idp/auth", "token_url": "https://idp/token",
                 "userdata_url": "https://idp/userinfo", "groups_claim": "roles"}}})
    c = Config()
    update_auth(values, c)
    assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    assert c.GenericOAuthenticator.auth_state_groups_key == "oauth_user.roles"
    assert c.GenericOAuthenticator.scope == ["openid", "profile", "email"]
    assert c.OAuthenticator.manage_groups is True
    assert c.OAuthenticator.allowed_groups == {"ml"} and c.OAuthenticator.admin_groups == {"ml-admins"}
    assert c.OAuthenticator.oauth_callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
    assert c.Authenticator.admin_users == {"alice"}
    assert "client_secret" not in c.OAuthenticator  # left to OAUTH_CLIENT_SECRET


def test_github_teams_become_groups():
    c = Config()
    update_auth(settings(auth={"type": "github", "oauth": {"client_id": "x", "client_secret": "s",
                                                         "github": {"organizations": ["acme"]}}}), c)
    assert c.OAuthenticator.client_secret == "s"
    assert c.GitHubOAuthenticator.allowed_organizations == {"acme"}
    assert c.GitHubOAuthenticator.auth_state_groups_key is github_team_groups
    teams = {"teams": [{"organization": {"login": "acme"}, "slug": "vision"},
                       {"organization": {"login": "acme"}, "slug": "nlp"}]}
    assert github_team_groups(teams) == ["acme:nlp", "acme:vision"]
    assert github_team_groups({}) == []


def test_named_servers_and_environment():
    c = apply_config(settings(spawner={"named_servers": {"enabled": False, "limit_per_user": 7},
                                       "environment": {"HF_HOME": "/data/hf"}}), Config())
    assert c.JupyterHub.allow_named_servers is False
    assert c.JupyterHub.named_server_limit_per_user == 7
    assert c.Spawner.environment["GPULAB_URL"] == "http://127.0.0.1:8000/"
    assert c.Spawner.environment["HF_HOME"] == "/data/hf"  # features add their own variables beside it


def test_nav_links_are_collected_for_the_templates():
    c = Config()
    update_templates(settings(), c)
    assert c.JupyterHub.template_paths[0].endswith("hub_config/templates")
    c = apply_config(settings(), Config())
    # in the extensions' order (registry positions), only those enabled
    assert [link["label"] for link in c.JupyterHub.template_vars["gpulab_nav"]] == [
        "Schedules", "SSH keys", "Projects", "Usage", "MLflow"]
    c = apply_config(settings(mlflow={"enabled": False}, ssh={"enabled": False}), Config())
    assert [link["label"] for link in c.JupyterHub.template_vars["gpulab_nav"]] == ["Schedules", "Projects", "Usage"]


def test_extensions_contribute_and_the_hub_composes_them_once():
    """Steps only set what they own; arguments, environment, hooks and links are composed in
    position order, and the admin's spawner.environment wins over an extension's default."""
    calls = []

    def hook(name):
        return lambda values: (lambda spawner: calls.append(name))

    first = Extension("first", 1, lambda values, c: None, nav_links=lambda v: [NavLink("One", "/one/")],
                      server_args=lambda v: ["--one"], server_environment=lambda v: {"A": "1", "HF_HOME": "x"},
                      pre_spawn_hook=hook("first"))
    second = Extension("second", 2, lambda values, c: None,
                       server_args=lambda v: ["--two"], server_environment=lambda v: {"A": "2"},
                       pre_spawn_hook=hook("second"))
    values = settings(spawner={"environment": {"HF_HOME": "/data/hf"}})
    c = apply_config(values, Config(), [first, second])
    assert c.Spawner.args[1:] == ["--one", "--two"]
    assert c.Spawner.environment == {"GPULAB_URL": server_hub_url(values), "A": "2", "HF_HOME": "/data/hf"}
    assert c.JupyterHub.template_vars["gpulab_nav"] == [{"label": "One", "url": "/one/"}]
    import asyncio

    asyncio.run(c.Spawner.pre_spawn_hook(None))
    assert calls == ["first", "second"]


def test_servers_find_the_hub_at_its_public_address_when_it_has_one():
    values = settings(hub={"public_url": "https://lab.example.com/", "base_url": "/gpu/"})
    assert apply_config(values, Config()).Spawner.environment["GPULAB_URL"] == "https://lab.example.com/gpu/"
    assert server_hub_url(settings(hub={"port": 8080})) == "http://127.0.0.1:8080/"


def test_every_log_level_the_schema_allows_is_one_jupyterhub_accepts():
    from jupyterhub.app import JupyterHub

    from gpulab.hub_config.settings import bundled_schema

    trait = JupyterHub.class_traits()["log_level"]
    for level in bundled_schema()["properties"]["hub"]["properties"]["log_level"]["enum"]:
        c = apply_config(settings(hub={"log_level": level}), Config())
        assert trait.validate(None, c.JupyterHub.log_level) is not None


def test_kubernetes_backend():
    c = apply_config(settings(spawner={"backend": "kubernetes", "kubernetes": {
        "namespace": "ml", "hub_url": "http://hub:8081", "home_storage": {"capacity": "10Gi", "storage_class": "fast"}}}),
        Config())
    assert c.JupyterHub.spawner_class == "gpulab.spawner.backends.kubernetes.spawner.GpulabKubeSpawner"
    assert (c.KubeSpawner.namespace, c.JupyterHub.hub_connect_url, c.JupyterHub.hub_ip) == ("ml", "http://hub:8081", "0.0.0.0")
    assert c.KubeSpawner.cmd == ["jupyterhub-singleuser"] and c.KubeSpawner.uid == 1000
    assert c.KubeSpawner.storage_capacity == "10Gi" and c.KubeSpawner.storage_class == "fast"
    assert c.KubeSpawner.volume_mounts == {"home": {"name": "home", "mountPath": "/home/jovyan"}}
    assert c.ProfileSpawnerMixin.profile_settings[0].id == "cpu"
