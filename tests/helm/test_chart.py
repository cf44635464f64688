"""The chart as Helm sees it: lint, render with the default values and with a values file that
sets every option, every manifest valid for a fixed Kubernetes version (offline schema of
kubernetes-validate), names and labels by Helm's conventions, and values.schema.json current,
described and closed (an unknown key fails `helm template` with the key's path).

No cluster: what the objects do once applied is not covered here (see README, Kubernetes).
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.helm import CHART, helm, render

HERE = Path(__file__).resolve().parent
EVERYTHING = HERE / "values-everything.yaml"
KUBERNETES = "1.33.0"
SCHEMA = CHART / "values.schema.json"


@pytest.fixture(scope="module")
def default_docs() -> list[dict]:
    return render(kube_version=KUBERNETES)


@pytest.fixture(scope="module")
def everything_docs() -> list[dict]:
    return render([EVERYTHING], kube_version=KUBERNETES)


@pytest.fixture(scope="module")
def everything_bundled_docs() -> list[dict]:
    """Every option, with the bundled PostgreSQL and generated secrets (which `everything` turns off)."""
    return render([EVERYTHING], ["postgresql.enabled=true", "secrets.existingSecret="], kube_version=KUBERNETES)


def kinds(docs: list[dict]) -> set[tuple[str, str]]:
    return {(doc["kind"], doc["metadata"]["name"]) for doc in docs}


@pytest.mark.parametrize("values", [[], [EVERYTHING]], ids=["defaults", "everything"])
def test_helm_lint_is_clean(values):
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBERNETES]
    for path in values:
        args += ["--values", str(path)]
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_defaults_render_every_component(default_docs):
    assert kinds(default_docs) >= {
        ("ConfigMap", "gpulab-hub"), ("Secret", "gpulab-secrets"), ("Deployment", "gpulab-hub"),
        ("Service", "gpulab-hub"), ("ServiceAccount", "gpulab-hub"), ("PersistentVolumeClaim", "gpulab-hub-data"),
        ("Role", "gpulab-hub"), ("RoleBinding", "gpulab-hub"),
        ("ClusterRole", "ml-gpulab-gpu-capacity"), ("ClusterRoleBinding", "ml-gpulab-gpu-capacity"),
        ("Deployment", "gpulab-proxy"), ("Service", "gpulab-proxy-public"), ("Service", "gpulab-proxy-api"),
        ("Service", "gpulab-ssh"), ("StatefulSet", "gpulab-postgresql"), ("Service", "gpulab-postgresql"),
        ("ConfigMap", "gpulab-postgresql-init"), ("PersistentVolumeClaim", "gpulab-projects"),
        ("NetworkPolicy", "gpulab-hub"), ("NetworkPolicy", "gpulab-proxy"), ("NetworkPolicy", "gpulab-postgresql"),
        ("NetworkPolicy", "gpulab-singleuser"), ("ConfigMap", "gpulab-grafana-dashboard"),
    }
    # nothing to pre-pull until profiles list images
    assert not [doc for doc in default_docs if doc["kind"] == "DaemonSet"]


def test_everything_renders_the_external_database_and_managed_secrets(everything_docs):
    names = kinds(everything_docs)
    assert not [name for name in names if "postgresql" in name[1]]  # postgresql.enabled false
    assert not [name for name in names if name[0] == "Secret"]  # secrets.existingSecret
    assert ("Deployment", "team-gpulab-hub") in names and ("Service", "team-gpulab-ssh") in names
    assert {name for kind, name in names if kind == "DaemonSet"} == {
        "team-gpulab-prepuller-cpu", "team-gpulab-prepuller-a100", "team-gpulab-prepuller-mig-small"}


RENDERINGS = ["default_docs", "everything_docs", "everything_bundled_docs"]


@pytest.mark.parametrize("which", RENDERINGS)
def test_every_manifest_validates_against_the_kubernetes_schema(which, request):
    docs = request.getfixturevalue(which)
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("which", RENDERINGS)
def test_objects_carry_helm_labels_and_names_fit(which, request):
    docs = request.getfixturevalue(which)
    release = "gpulab"
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == release
        assert labels["app.kubernetes.io/part-of"] == "gpulab"
        assert labels["app.kubernetes.io/component"]
        assert labels["helm.sh/chart"] == "gpulab-0.1.0"
        assert len(doc["metadata"]["name"]) <= 63
        template = doc.get("spec", {}).get("template")
        if template:  # workloads select their pods by the stable labels only
            selector = doc["spec"]["selector"]["matchLabels"]
            assert set(selector) >= {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                     "app.kubernetes.io/component"}
            assert "helm.sh/chart" not in selector and "app.kubernetes.io/version" not in selector
            assert selector.items() <= template["metadata"]["labels"].items()


def test_everything_with_the_bundled_database_uses_its_options(everything_bundled_docs):
    (postgres,) = [d for d in everything_bundled_docs if d["kind"] == "StatefulSet"]
    spec = postgres["spec"]
    assert spec["template"]["spec"]["containers"][0]["image"] == "registry.example.com/postgres:17.5"
    assert spec["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": 2, "memory": "4Gi"}
    assert spec["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert ("Secret", "team-gpulab-secrets") in kinds(everything_bundled_docs)


def test_services_select_pods_that_exist_and_name_their_ports(default_docs):
    pods = {doc["metadata"]["name"]: doc["spec"]["template"] for doc in default_docs
            if doc["kind"] in ("Deployment", "StatefulSet")}
    for service in (doc for doc in default_docs if doc["kind"] == "Service"):
        name = service["metadata"]["name"]
        selected = [pod for pod, template in pods.items()
                    if service["spec"]["selector"].items() <= template["metadata"]["labels"].items()]
        assert len(selected) == 1, name
        named = {port["name"] for c in pods[selected[0]]["spec"]["containers"] for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            # a number is one of gpulab's services, which the hub process opens (hub.service_host)
            assert port["targetPort"] in named if isinstance(port["targetPort"], str) else name == "gpulab-hub"


def test_notes_render(default_docs):
    result = helm("install", "gpulab", str(CHART), "--dry-run=client", "--namespace", "ml")
    assert "kubectl --namespace ml get service gpulab-proxy-public" in result.stdout
    assert "No admin yet: set gpulab.auth.admin_users" in result.stdout


# ---------------------------------------------------------------- values.schema.json


def test_values_schema_is_generated_from_gpulab_schema():
    from helm.values_schema import render as render_schema

    assert SCHEMA.read_text() == render_schema(), "run .venv/bin/python helm/values_schema.py"


def _walk(schema: dict, path: str = "", key: bool = False):
    """(path, schema, is a key) for every schema node: keys are properties and map values."""
    yield path, schema, key
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}".lstrip("."), True)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*".lstrip("."), True)
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


def test_values_schema_describes_every_key_and_closes_every_object():
    schema = json.loads(SCHEMA.read_text())
    for path, node, key in _walk(schema):
        if key:
            assert isinstance(node.get("description"), str) and node["description"].strip(), f"{path}: no description"
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: unknown keys are not rejected"
    # the keys the chart sets, and secrets, cannot be given in values
    gpulab = schema["properties"]["gpulab"]["properties"]
    assert "proxy" not in gpulab and "database" not in gpulab
    assert "data_dir" not in gpulab["hub"]["properties"] and "backend" not in gpulab["spawner"]["properties"]
    assert "client_secret" not in gpulab["auth"]["properties"]["oauth"]["properties"]


def _leaves(schema: dict, path: tuple = ()):
    """Key paths of the chart's own options (free-form maps and lists count as one option)."""
    props = schema.get("properties")
    if not props:
        yield path
        return
    for key, sub in props.items():
        yield from _leaves(sub, path + (key,))


def test_values_everything_sets_every_chart_option():
    schema = json.loads(SCHEMA.read_text())
    values = yaml.safe_load(EVERYTHING.read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    missing, unchanged = [], []
    for path in _leaves({"properties": {k: v for k, v in schema["properties"].items() if k != "gpulab"}}):
        node, default = values, defaults
        for key in path:
            node = node.get(key, KeyError) if isinstance(node, dict) else KeyError
            default = default.get(key) if isinstance(default, dict) else None
        if node is KeyError:
            missing.append(".".join(path))
        elif node == default and path != ("rbac", "create") and path[-1] not in ("create", "enabled", "port", "tag", "type"):
            unchanged.append(".".join(path))
    assert not missing, f"values-everything.yaml lacks {missing}"
    assert not unchanged, f"values-everything.yaml keeps the defaults of {unchanged}"


@pytest.mark.parametrize(("setting", "where"), [
    ("hub.bogus=1", "at '/hub': additional properties 'bogus' not allowed"),
    ("gpulab.hub.bogus=1", "at '/gpulab/hub': additional properties 'bogus' not allowed"),
    ("gpulab.database.url=sqlite://", "at '/gpulab': additional properties 'database' not allowed"),
    ("gpulab.spawner.backend=local", "at '/gpulab/spawner': additional properties 'backend' not allowed"),
    ("gpulab.hub.log_level=LOUD", "at '/gpulab/hub/log_level'"),
])
def test_schema_rejects_unknown_keys_and_bad_values_with_their_path(setting, where):
    result = helm("template", "gpulab", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert where in result.stderr, result.stderr


def test_prepuller_for_an_unknown_profile_fails_with_its_name():
    result = helm("template", "gpulab", str(CHART), "--set", "prePuller.profiles.nope.images={busybox}", check=False)
    assert result.returncode != 0
    assert "prePuller.profiles.nope: no profile with that id in gpulab.profiles" in result.stderr


def test_without_ssh_no_gateway_service_port_or_opening():
    docs = render(set_values=["gpulab.ssh.enabled=false"])
    assert ("Service", "gpulab-ssh") not in kinds(docs)
    (hub,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gpulab-hub"]
    assert [p["name"] for p in hub["spec"]["template"]["spec"]["containers"][0]["ports"]] == ["hub"]
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "gpulab-hub"]
    assert "ssh" not in str(policy["spec"]["ingress"])
