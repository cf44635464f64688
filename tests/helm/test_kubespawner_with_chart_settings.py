"""The hub configuration the chart renders, run: a real hub with the gpulab.yaml from the
chart's ConfigMap spawns user servers as pods through the emulated Kubernetes API of
tests/k8s (kmock), behind a configurable-http-proxy it does not start (the chart's proxy
Deployment), with gpulab's services listening on every interface and reached by host name
(the chart's hub Service).

What differs from a cluster, and is not covered: the hub runs as a process here, so its
addresses are 127.0.0.1 on random ports instead of the chart's Service names and ports
(hub.ip/port/internal_port/data_dir, proxy.api_url, spawner.kubernetes.hub_url and
ssh.servers_url are rewritten, and hub.service_host is "localhost"); the databases are SQLite
files, not PostgreSQL; no Secret, volume, NetworkPolicy or RBAC is enforced; and what tests/k8s's docstring lists for the emulated cluster (scheduling, the
device plugin, images).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from gpulab.hub_config.client import HubClient
from tests.support.cluster import NAMESPACE, container, env_of
from tests.support.gpu_hub import catalog
from tests.support.helm import render
from tests.support.hub import wait_for, write_settings


CHP_BIN = os.environ.get("GPULAB_TEST_CHP_BIN", "")
pytestmark = pytest.mark.skipif(not CHP_BIN, reason="configurable-http-proxy is not installed (./test.sh installs it)")


# A known bug of the kubernetes backend, worked around here so the rest can run: KubeSpawner
# expands {...} templates in every environment value, and GPULAB_TENSORBOARD is JSON, so every
# spawn fails with KeyError '"enabled"' (tests/k8s/test_kubernetes_spawner.py fails the same
# way). Doubling the braces of JSON values makes KubeSpawner's expansion give them back intact.



def chart_docs(folder: Path) -> list[dict]:
    values = {
        "gpulab": {
            "auth": {"admin_users": ["admin"]},
            "profiles": [
                {"id": "cpu", "display_name": "CPU", "default": True, "cpu": {"limit": 2}, "memory": {"limit": "4G"}},
                {"id": "a100", "display_name": "1 A100", "gpu": {"count": 1, "models": ["A100"]},
                 "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]},
            ],
            "environments": {"catalog": str(catalog(folder))},
        },
        "prePuller": {"profiles": {"a100": {"images": ["test/torch:cuda12"]}}},
    }
    path = folder / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return render([path], namespace=NAMESPACE)


def outside_a_cluster(settings: dict) -> dict:
    """The chart's settings with what only exists in a cluster taken out (see the docstring)."""
    settings = yaml.safe_load(yaml.safe_dump(settings))
    for key in ("ip", "port", "internal_port", "data_dir"):
        del settings["hub"][key]
    settings["hub"]["db_url"] = settings["database"]["url"] = ""
    settings["hub"]["service_host"] = "localhost"
    return settings


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    return chart_docs(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="module")
def hub(module_hub_factory, cluster, chart, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chart-hub")
    (config,) = [d for d in chart if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gpulab-hub"]
    rendered = yaml.safe_load(config["data"]["gpulab.yaml"])
    assert rendered["proxy"]["api_url"] and rendered["spawner"]["backend"] == "kubernetes"
    kubeconfig = cluster.kubeconfig(folder)
    token = secrets.token_hex(32)
    hub = module_hub_factory.prepare(outside_a_cluster(rendered), name="chart",
                                     extra_env={"KUBECONFIG": str(kubeconfig), "CONFIGPROXY_AUTH_TOKEN": token})
    ports = hub.ports
    hub.settings["proxy"]["api_url"] = f"http://127.0.0.1:{ports['proxy_api']}"
    hub.settings["spawner"]["kubernetes"]["hub_url"] = f"http://127.0.0.1:{ports['hub']}"
    hub.settings["ssh"]["servers_url"] = f"http://127.0.0.1:{ports['public']}"
    write_settings(hub.settings_file, hub.settings)
    proxy = subprocess.Popen(
        [str(Path(CHP_BIN) / "configurable-http-proxy"), "--ip=127.0.0.1", f"--port={ports['public']}",
         "--api-ip=127.0.0.1", f"--api-port={ports['proxy_api']}", f"--default-target=http://127.0.0.1:{ports['hub']}"],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}, stdout=open(folder / "chp.log", "wb"),
        stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _listening(ports["proxy_api"], token), 30, "configurable-http-proxy")
        hub.start()
        yield hub
    finally:
        proxy.terminate()
        proxy.wait(10)


def _listening(port: int, token: str) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/routes", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2):
            return True
    except OSError:
        return False


def test_the_hub_runs_behind_the_proxy_it_did_not_start(hub):
    log = hub.log_path.read_text(errors="replace")
    assert "Not starting proxy" in log and "Starting proxy @" not in log
    assert hub.api.request("GET", "hub/api/")["version"]  # through the external proxy


def test_a_cpu_server_is_a_pod_the_chart_network_policy_selects(hub, cluster, chart):
    hub.create_user("kate")
    hub.spawn("kate")
    assert "started" in hub.api.request("GET", "user/kate/api/status")
    pod = cluster.pod_of("kate")
    (policy,) = [d for d in chart if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "gpulab-singleuser"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    env = env_of(pod)
    assert env["GPULAB_URL"] == "http://gpulab-proxy-public:80/"
    assert env["JUPYTERHUB_API_URL"] == f"http://127.0.0.1:{hub.ports['hub']}/hub/api"
    assert env["MLFLOW_TRACKING_URI"].startswith(f"http://localhost:{hub.ports['hub'] + 2}/")
    assert container(pod)["securityContext"]["runAsUser"] == 1000 and pod["spec"]["securityContext"]["fsGroup"] == 100
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "home-kate"}} in pod["spec"]["volumes"]
    hub.stop_server("kate")
    wait_for(lambda: cluster.pod_of("kate") is None, 30, "kate's pod to be deleted")


def test_a_gpu_pod_lands_where_the_chart_pre_pulls(hub, cluster, chart):
    hub.create_user("gary")
    hub.spawn("gary", options={"profile": "a100"})
    pod = cluster.pod_of("gary")
    assert container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (puller,) = [d for d in chart if d["kind"] == "DaemonSet"]
    spec = puller["spec"]["template"]["spec"]
    assert spec["tolerations"] == pod["spec"]["tolerations"]
    assert (spec.get("nodeSelector") or {}).items() <= (pod["spec"].get("nodeSelector") or {}).items()
    assert [c["image"] for c in spec["initContainers"]] == [container(pod)["image"]]
    hub.stop_server("gary")


def listening_on_every_interface(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port and set(address) == {"0"}:
                return True
    return False


def test_services_listen_on_every_interface_and_answer_through_the_proxy(hub):
    # the SSH keys API: a service the hub starts, bound by GPULAB_SERVICE_BIND, routed by the external proxy
    hub.create_user("sam")
    assert HubClient(hub.url, hub.user_token("sam")).request("GET", "services/ssh/api/keys") == []
    assert listening_on_every_interface(hub.ports["hub"] + 4)
    assert not listening_on_every_interface(hub.ports["hub"] + 40)
