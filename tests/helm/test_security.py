"""Least privilege in the rendered chart: the hub's RBAC, and the NetworkPolicies evaluated
for connections between the pods the chart and KubeSpawner create.

The NetworkPolicy evaluation below follows the Kubernetes semantics for what the chart uses
(pod selectors with matchLabels, namespaceSelector {}, ipBlock, named and numbered ports);
whether a cluster's network plugin enforces them is not covered.
"""

from __future__ import annotations


import pytest

from tests.support.helm import render

NAMESPACE = "ml"


@pytest.fixture(scope="module")
def docs():
    return render(namespace=NAMESPACE)


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


# ---------------------------------------------------------------- RBAC


def test_the_hubs_role_is_namespaced_and_only_what_spawning_needs(docs):
    (role,) = of_kind(docs, "Role")
    assert role["metadata"].get("namespace", NAMESPACE) == NAMESPACE
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert set(granted) == {("", "pods"), ("", "persistentvolumeclaims"), ("", "events"), ("batch", "jobs"),
                            ("", "secrets"), ("", "pods/log")}
    assert granted[("", "events")] == {"get", "list", "watch"}
    assert granted[("", "secrets")] == {"create", "delete"}  # run tokens; no Secret can be read
    assert granted[("", "pods/log")] == {"get"}  # an ended run's log
    for verbs in granted.values():
        assert "*" not in verbs and not verbs & {"escalate", "bind", "impersonate", "deletecollection"}
        assert verbs <= {"get", "list", "watch", "create", "delete"}
    (binding,) = of_kind(docs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gpulab-hub"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gpulab-hub", "namespace": NAMESPACE}]


def test_cluster_wide_access_is_read_only_nodes_and_pods(docs):
    (cluster_role,) = of_kind(docs, "ClusterRole")
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["nodes", "pods"],
                                      "verbs": ["get", "list", "watch"]}]


def test_without_the_scheduler_no_jobs():
    (role,) = of_kind(render(set_values=["gpulab.scheduler.enabled=false"]), "Role")
    assert not {"jobs", "secrets", "pods/log"} & {resource for rule in role["rules"] for resource in rule["resources"]}


def test_only_the_hub_mounts_an_api_token(docs):
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            spec = doc["spec"]["template"]["spec"]
            if doc["metadata"]["name"] == "gpulab-hub":
                assert spec["serviceAccountName"] == "gpulab-hub"
            else:
                assert spec["automountServiceAccountToken"] is False, doc["metadata"]["name"]


# ---------------------------------------------------------------- NetworkPolicies


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"evaluator does not know {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def port_matches(rule_ports: list | None, port: int, named: dict[str, int]) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        wanted = entry.get("port")
        if wanted is None or wanted == port or (isinstance(wanted, str) and named.get(wanted) == port):
            if entry.get("protocol", "TCP") == "TCP":
                return True
    return False


def peer_matches(peers: list | None, other: dict) -> bool:
    if not peers:
        return True  # no `from`/`to`: every source or destination
    for peer in peers:
        if "ipBlock" in peer:
            continue  # pod-to-pod traffic here is always from a private range the chart excepts
        if "namespaceSelector" in peer:
            assert peer["namespaceSelector"] == {}, "evaluator knows only namespaceSelector {}"
            if selects(peer.get("podSelector", {}), other["labels"]):
                return True
        elif selects(peer["podSelector"], other["labels"]):
            return True
    return False


def allowed(policies: list[dict], source: dict, target: dict, port: int) -> bool:
    """Whether `source` may open TCP `port` on `target` (both in the release's namespace)."""
    def direction(pod: dict, kind: str, other: dict, named: dict[str, int]) -> bool:
        applying = [p for p in policies if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod["labels"])]
        if not applying:
            return True
        key, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        return any(peer_matches(rule.get(peers), other) and port_matches(rule.get("ports"), port, named)
                   for policy in applying for rule in policy["spec"].get(key, []))

    return (direction(target, "Ingress", source, target["ports"])
            and direction(source, "Egress", target, target["ports"]))


def pods_of(docs: list[dict]) -> dict[str, dict]:
    """The chart's pods, and two user servers labelled as KubeSpawner labels them."""
    pods = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            template = doc["spec"]["template"]
            ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            pods[doc["metadata"]["name"].removeprefix("gpulab-")] = {"labels": template["metadata"]["labels"],
                                                                      "ports": ports}
    for user in ("alice", "bob"):
        labels = {"app.kubernetes.io/component": "singleuser-server", "component": "singleuser-server",
                  "app.kubernetes.io/part-of": "gpulab",  # spawner.kubernetes: KubeSpawner.common_labels
                  "hub.jupyter.org/username": user, "hub.jupyter.org/servername": ""}
        pods[user] = {"labels": labels, "ports": {}}
    # a scheduled run's pod, labelled as spawner/backends/kubernetes/job_manifests.py labels it
    from gpulab.spawner.backends.kubernetes.job_manifests import labels as run_labels

    pods["run"] = {"labels": run_labels("r1"), "ports": {}}
    return pods


def test_kubespawner_labels_user_pods_as_the_policies_expect():
    from traitlets.config import Config

    from gpulab.spawner.backends import backend
    from tests.support.settings import typed_settings

    c = Config()
    backend("kubernetes").configure(typed_settings({"spawner": {"backend": "kubernetes"}}), c)
    assert c.KubeSpawner.common_labels == {"app.kubernetes.io/part-of": "gpulab"}
    from kubespawner import KubeSpawner

    assert KubeSpawner.component_label.default_value == "singleuser-server"


@pytest.mark.parametrize(("source", "target", "port", "expected"), [
    # user servers: not the database, not each other, but the hub's API, its services and the proxy
    ("alice", "postgresql", 5432, False),
    ("alice", "bob", 8888, False),
    ("bob", "alice", 8888, False),
    ("alice", "proxy", 8001, False),  # the routing table is the hub's
    ("alice", "hub", 8081, True),
    ("alice", "hub", 8083, True),  # MLflow
    ("alice", "hub", 8084, True),  # the scheduler
    ("alice", "proxy", 8000, True),
    # the hub and the proxy reach user servers; the hub alone reaches the database and the proxy's API
    ("proxy", "alice", 8888, True),
    ("hub", "alice", 8888, True),
    ("hub", "postgresql", 5432, True),
    ("hub", "proxy", 8001, True),
    ("proxy", "postgresql", 5432, False),
    ("proxy", "hub", 8082, True),  # /services/projects/
    # scheduled runs' pods: as user servers (they run users' notebooks)
    ("run", "hub", 8084, True),  # the runner reports to the scheduler
    ("run", "hub", 8083, True),  # and logs to MLflow
    ("run", "postgresql", 5432, False),
    ("run", "alice", 8888, False),
    ("alice", "run", 8888, False),
])
def test_network_policies(docs, source, target, port, expected):
    pods = pods_of(docs)
    assert allowed(of_kind(docs, "NetworkPolicy"), pods[source], pods[target], port) is expected


def test_user_servers_reach_public_addresses_but_no_private_range(docs):
    (policy,) = [p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "gpulab-singleuser"]
    blocks = [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule.get("to", []) if "ipBlock" in peer]
    assert blocks == [{"cidr": "0.0.0.0/0",
                       "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]}]
    closed = render(set_values=["networkPolicy.singleuser.allowInternet=false"])
    (policy,) = [p for p in of_kind(closed, "NetworkPolicy") if p["metadata"]["name"] == "gpulab-singleuser"]
    assert not [peer for rule in policy["spec"]["egress"] for peer in rule.get("to", []) if "ipBlock" in peer]
