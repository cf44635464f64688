"""The hub's configuration the chart renders: the gpulab.yaml in its ConfigMap loads and
validates in gpulab's own loader, goes through apply_config, and agrees with the objects
around it (the proxy's API Service, the hub Service's ports, the SSH port, the secret files
the hub's init container writes). Secrets stay out of the ConfigMap.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from traitlets.config import Config

from gpulab.extensions.ssh.config import ssh_paths
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.settings import load_settings
from tests.support.helm import render

HERE = Path(__file__).resolve().parent
EVERYTHING = HERE / "values-everything.yaml"


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def hub_settings(docs: list[dict], prefix: str, tmp_path: Path):
    text = find(docs, "ConfigMap", f"{prefix}-hub")["data"]["gpulab.yaml"]
    path = tmp_path / "gpulab.yaml"
    path.write_text(text)
    return load_settings(path), text


@pytest.fixture(scope="module")
def default_docs():
    return render()


@pytest.fixture(scope="module")
def everything_docs():
    return render([EVERYTHING])


def service_port_numbers(service: dict) -> set[int]:
    return {port["port"] for port in service["spec"]["ports"]}


@pytest.mark.parametrize(("which", "prefix"), [("default_docs", "gpulab"), ("everything_docs", "team-gpulab")])
def test_rendered_settings_load_and_apply_for_kubernetes(which, prefix, request, tmp_path):
    docs = request.getfixturevalue(which)
    settings, _ = hub_settings(docs, prefix, tmp_path)
    values = settings.values
    c = apply_config(settings.settings, Config())

    assert c.JupyterHub.spawner_class == "gpulab.spawner.backends.kubernetes.spawner.GpulabKubeSpawner"
    assert c.KubeSpawner.namespace == "ml"
    # the proxy is the chart's Deployment: not started by the hub, reached at its API Service
    proxy_api = find(docs, "Service", f"{prefix}-proxy-api")
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == f"http://{prefix}-proxy-api:{proxy_api['spec']['ports'][0]['port']}"
    # pods reach the hub through its Service; the hub listens for them
    hub_service = find(docs, "Service", f"{prefix}-hub")
    assert c.JupyterHub.hub_connect_url == f"http://{prefix}-hub:8081"
    assert c.JupyterHub.hub_ip == "0.0.0.0" and c.JupyterHub.hub_port in service_port_numbers(hub_service)
    # every service the hub starts is reached through the hub's Service, on a port it exposes
    for spec in c.JupyterHub.services:
        if "url" in spec:
            host, port = spec["url"].removeprefix("http://").split(":")
            assert host == f"{prefix}-hub" and int(port) in service_port_numbers(hub_service), spec["name"]
            assert spec["environment"]["GPULAB_SERVICE_BIND"] == "0.0.0.0"
    # the databases are PostgreSQL, without a password in the URL (libpq's password file has it)
    assert c.JupyterHub.db_url.startswith("postgresql://") and c.ProfileSpawnerMixin.database_url.startswith("postgresql://")
    for url in (c.JupyterHub.db_url, c.ProfileSpawnerMixin.database_url):
        assert ":" not in url.removeprefix("postgresql://").split("@")[0]
    # the hub's data folder is the volume the Deployment mounts
    hub = find(docs, "Deployment", f"{prefix}-hub")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in hub["containers"][0]["volumeMounts"]}
    # a sub-folder of the volume, which the hub creates and may make private (not the volume's root)
    assert Path(mounts["data"]) in Path(values["hub"]["data_dir"]).parents
    # user servers find gpulab at the proxy's public Service
    public = find(docs, "Service", f"{prefix}-proxy-public")
    assert c.Spawner.environment["GPULAB_URL"] == (
        f"http://{prefix}-proxy-public:{public['spec']['ports'][0]['port']}{values['hub']['base_url']}")


def test_everything_keeps_the_users_settings(everything_docs, tmp_path):
    values = hub_settings(everything_docs, "team-gpulab", tmp_path)[0].values
    assert values["auth"]["type"] == "oidc" and values["hub"]["base_url"] == "/gpulab/"
    assert [p["id"] for p in values["profiles"]] == ["cpu", "a100", "mig-small"]
    assert values["spawner"]["kubernetes"]["home_storage"] == {"capacity": "50Gi", "storage_class": "fast-ssd"}
    assert values["spawner"]["environment"]["HF_HOME"] == "/data/hf-cache"
    assert values["database"]["url"] == "postgresql://gpulab_app@postgres.databases.svc.cluster.local:6432/gpulab_state"
    assert values["hub"]["db_url"].endswith(":6432/gpulab_hub")
    assert values["hub"]["metrics_public"] is False  # metrics.prometheus.enabled false
    assert values["projects"]["kubernetes"]["claim_name"] == "team-gpulab-projects"


def test_ssh_gateway_port_and_master_secret_match_the_pod(everything_docs, tmp_path):
    loaded = hub_settings(everything_docs, "team-gpulab", tmp_path)[0]
    values = loaded.values
    hub = find(everything_docs, "Deployment", "team-gpulab-hub")["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in hub["containers"][0]["ports"]}
    assert ports["ssh"] == values["ssh"]["port"]
    assert values["ssh"]["bind_address"] == "0.0.0.0"
    assert values["ssh"]["servers_url"] == "http://team-gpulab-proxy-public:443"
    # the init container writes the Secret's master secret where the gateway and the spawner read it
    script = hub["initContainers"][0]["command"][-1]
    assert f"> {ssh_paths(loaded.settings)['master_secret']}\n" in script


def test_secrets_come_from_the_secret_never_the_configmap(default_docs, tmp_path):
    _, text = hub_settings(default_docs, "gpulab", tmp_path)
    secret = find(default_docs, "Secret", "gpulab-secrets")
    values = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert set(values) == {"proxy-token", "cookie-secret", "ssh-master-secret", "db-password"}
    assert all(len(bytes.fromhex(values[key])) == 32 for key in ("cookie-secret", "ssh-master-secret"))
    for value in values.values():
        assert value not in text and value not in json.dumps(default_docs[0])
    hub = find(default_docs, "Deployment", "gpulab-hub")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in hub["containers"][0]["env"]}
    assert env["CONFIGPROXY_AUTH_TOKEN"] == {"name": "gpulab-secrets", "key": "proxy-token"}
    assert env["JPY_COOKIE_SECRET"] == {"name": "gpulab-secrets", "key": "cookie-secret"}
    proxy = find(default_docs, "Deployment", "gpulab-proxy")["spec"]["template"]["spec"]
    assert proxy["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "gpulab-secrets", "key": "proxy-token"}
    postgres = find(default_docs, "StatefulSet", "gpulab-postgresql")["spec"]["template"]["spec"]
    db_env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in postgres["containers"][0]["env"]}
    assert db_env["POSTGRES_PASSWORD"] == {"name": "gpulab-secrets", "key": "db-password"}


def test_managed_secrets_and_external_database_password(everything_docs):
    hub = find(everything_docs, "Deployment", "team-gpulab-hub")["spec"]["template"]["spec"]
    init_env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in hub["initContainers"][0]["env"]}
    assert init_env["DB_PASSWORD"] == {"name": "gpulab-db", "key": "pw"}
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in hub["containers"][0]["env"]}
    assert env["CONFIGPROXY_AUTH_TOKEN"]["name"] == "gpulab-managed-secrets"
    assert env["OAUTH_CLIENT_SECRET"] == {"name": "gpulab-oidc", "key": "secret"}


def test_a_settings_change_changes_the_checksum_that_restarts_the_hub():
    def checksum(*sets: str) -> str:
        docs = render(set_values=list(sets))
        return find(docs, "Deployment", "gpulab-hub")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()  # stable: random secrets are not part of it
    assert checksum("gpulab.hub.log_level=DEBUG") != checksum()
    assert checksum("proxy.service.port=8080") != checksum()  # GPULAB_URL and ssh.servers_url follow it


def test_an_invalid_gpulab_section_is_refused_by_the_chart_before_the_hub():
    from tests.support.helm import CHART, helm

    result = helm("template", "gpulab", str(CHART), "--set", "gpulab.spawner.start_timeout=1", check=False)
    assert result.returncode != 0 and "/gpulab/spawner/start_timeout" in result.stderr


def test_the_readme_values_file_renders_and_loads(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n# my-values.yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my-values.yaml"
    path.write_text(block)
    docs = render([path])
    c = apply_config(hub_settings(docs, "gpulab", tmp_path)[0].settings, Config())
    assert c.JupyterHub.authenticator_class == "oauthenticator.github.GitHubOAuthenticator"
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "DaemonSet"] == ["gpulab-prepuller-a100"]


def test_the_init_script_writes_the_password_file_and_master_secret_gpulab_reads(default_docs, tmp_path):
    import os
    import subprocess

    from gpulab.extensions.ssh.trust import master_secret

    hub = find(default_docs, "Deployment", "gpulab-hub")["spec"]["template"]["spec"]
    (init,) = hub["initContainers"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    script = init["command"][-1]
    for name in ("home", "data", "secrets"):  # the pod's folders, under tmp_path
        (tmp_path / name).mkdir()
        script = script.replace(mounts[name], str(tmp_path / name))
    secret = "ab" * 32
    (tmp_path / "secrets" / "ssh-master-secret").write_text(secret)
    env = {"PATH": os.environ["PATH"], "DB_USER": "gpulab", "DB_PASSWORD": "p:ss\\word"}
    subprocess.run([*init["command"][:-1], script], env=env, check=True)
    pgpass = tmp_path / "home" / ".pgpass"
    assert pgpass.read_text() == "*:*:*:gpulab:p\\:ss\\\\word\n"  # libpq's escapes for : and \
    assert pgpass.stat().st_mode & 0o077 == 0  # libpq ignores a password file others can read
    settings = hub_settings(default_docs, "gpulab", tmp_path)[0].settings
    written = Path(str(ssh_paths(settings)["master_secret"]).replace(mounts["data"], str(tmp_path / "data")))
    assert master_secret(written) == bytes.fromhex(secret)
