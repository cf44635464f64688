"""Settings for running pieces apart from the hub (the Helm chart's shape): a proxy the hub
does not start (proxy.api_url), services reached by host name (hub.service_host), and
metrics a scraper can read without a token (hub.metrics_public)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from traitlets.config import Config

from gpulab.extensions.mlflow.config import tracking_uri
from gpulab.hub_config.services.config import BIND_VARIABLE, service_url
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.settings import ConfigError, deep_merge, load_settings, validate
from gpulab.hub_config.typed_settings import Settings
from tests.support.settings import typed_settings


def settings(**sections) -> Settings:
    base = {"hub": {"data_dir": "/srv/gpulab/data"}}
    return typed_settings(deep_merge(base, sections), Path("/srv/gpulab"))


def test_defaults_start_the_proxy_and_keep_services_on_loopback():
    values = settings()
    assert values.proxy.api_url == "" and values.hub.service_host == ""
    c = apply_config(values, Config())
    assert c.TraefikFileProviderProxy.should_start is True
    for spec in c.JupyterHub.services:
        assert BIND_VARIABLE not in spec.get("environment", {})
        if "url" in spec:
            assert spec["url"].startswith("http://127.0.0.1:")


def test_external_chp_is_not_started_and_uses_the_given_api():
    c = apply_config(settings(proxy={"kind": "configurable-http-proxy", "api_url": "http://gpulab-proxy-api:8001/"}),
                     Config())
    assert c.JupyterHub.proxy_class == "configurable-http-proxy"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://gpulab-proxy-api:8001"
    assert "pid_file" not in c.ConfigurableHTTPProxy
    assert "auth_token" not in c.ConfigurableHTTPProxy  # from CONFIGPROXY_AUTH_TOKEN, never in config


@pytest.mark.parametrize("proxy", [{"api_url": "http://proxy:8001"},
                                   {"kind": "traefik", "api_url": "http://proxy:8001"}])
def test_external_proxy_must_be_chp(proxy):
    problems = validate({"proxy": proxy})
    assert [p.path for p in problems] == ["proxy.kind"]


def test_external_proxy_url_is_a_bare_http_address(tmp_path):
    path = tmp_path / "gpulab.yaml"
    path.write_text("proxy:\n  kind: configurable-http-proxy\n  api_url: gpulab-proxy-api:8001\n")
    with pytest.raises(ConfigError, match=r"gpulab.yaml:3: proxy.api_url: got \"gpulab-proxy-api:8001\""):
        load_settings(path)


def test_service_host_makes_services_listen_everywhere_and_be_reached_by_name():
    values = settings(hub={"service_host": "gpulab-hub", "internal_port": 8081})
    assert service_url(values, "projects") == "http://gpulab-hub:8082"
    c = apply_config(values, Config())
    specs = {spec["name"]: spec for spec in c.JupyterHub.services}
    for name in ("projects", "mlflow", "scheduler", "ssh"):
        assert specs[name]["environment"][BIND_VARIABLE] == "0.0.0.0"
    assert specs["mlflow"]["url"] == "http://gpulab-hub:8083"
    assert specs["projects"]["url"] == "http://gpulab-hub:8082"
    # user servers send MLflow calls to the hub's Service, and scheduled runs report back there
    assert tracking_uri(values).startswith("http://gpulab-hub:8083/")
    scheduler = json.loads(specs["scheduler"]["environment"]["GPULAB_SERVICE_SETTINGS"])
    assert scheduler["runner_url"].startswith("http://gpulab-hub:8084/")


def test_service_host_is_a_host_name():
    assert [p.path for p in validate({"hub": {"service_host": "http://gpulab-hub"}})] == ["hub.service_host"]


@pytest.mark.parametrize(("public", "authenticate"), [(False, True), (True, False)])
def test_metrics_need_a_token_unless_made_public(public, authenticate):
    c = apply_config(settings(hub={"metrics_public": public}), Config())
    assert c.JupyterHub.authenticate_prometheus is authenticate


def test_gpulab_up_needs_no_local_chp_for_an_external_one(monkeypatch):
    from gpulab.hub_config import up

    monkeypatch.setattr(up.shutil, "which", lambda name: None)  # no configurable-http-proxy here
    chp = {"kind": "configurable-http-proxy"}
    assert "not installed" in up.missing_proxy(settings(proxy=chp))
    assert up.missing_proxy(settings(proxy={**chp, "api_url": "http://gpulab-proxy-api:8001"})) is None
