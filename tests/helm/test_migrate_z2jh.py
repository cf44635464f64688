"""`gpulab migrate z2jh` on z2jh's documented values: the chart's defaults (jupyterhub/values.yaml,
the keys an operator's file repeats) with the customization guide's examples (a profileList with
overrides and profile options, culling, dynamic storage with a class, extra volumes, GitHub
sign-in). The converted file renders with the chart, every manifest validates against the
Kubernetes schema, and the hub's rendered gpulab.yaml loads in gpulab's own loader (schema and
load-time checks) and goes through apply_config. The inputs are written here, not copied."""

from __future__ import annotations


import kubernetes_validate
import pytest
import yaml
from traitlets.config import Config

from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.cli import main
from gpulab.hub_config.settings import load_settings
from tests.support.helm import render

KUBERNETES = "1.33.0"

Z2JH_VALUES = """
hub:
  baseUrl: /
  config:
    JupyterHub:
      admin_access: true
      authenticator_class: github
    Authenticator:
      admin_users: [alice]
    GitHubOAuthenticator:
      client_id: Iv1.0123456789abcdef
      client_secret: not-a-real-secret
      oauth_callback_url: https://hub.example.com/hub/oauth_callback
      allowed_organizations: [example-ml]
      scope: [read:org]
  allowNamedServers: true
  namedServerLimitPerUser: 2
  concurrentSpawnLimit: 64
  consecutiveFailureLimit: 5
  db: {type: sqlite-pvc, pvc: {accessModes: [ReadWriteOnce], storage: 1Gi}}
  networkPolicy: {enabled: true}
  extraConfig:
    10-timeouts.py: |
      c.KubeSpawner.http_timeout = 120
proxy:
  secretToken: ""
  service: {type: LoadBalancer}
  https: {enabled: false, type: letsencrypt}
  chp: {networkPolicy: {enabled: true}, resources: {}}
singleuser:
  defaultUrl: /lab
  startTimeout: 300
  uid: 1000
  fsGid: 100
  cmd: jupyterhub-singleuser
  networkPolicy: {enabled: true}
  image:
    name: quay.io/jupyterhub/k8s-singleuser-sample
    tag: "4.0.0"
    pullPolicy: IfNotPresent
  cpu: {limit: 4, guarantee: 0.5}
  memory: {limit: 8G, guarantee: 1G}
  extraEnv:
    EDITOR: vim
    HF_HOME: /home/jovyan/.cache/hf
  extraLabels:
    hub.jupyter.org/network-access-hub: "true"
  nodeSelector: {node-pool: users}
  extraTolerations:
    - {key: dedicated, operator: Equal, value: jupyter, effect: NoSchedule}
  storage:
    type: dynamic
    capacity: 20Gi
    homeMountPath: /home/jovyan
    dynamic:
      storageClass: standard-rwo
      pvcNameTemplate: claim-{username}{servername}
      storageAccessModes: [ReadWriteOnce]
    extraVolumes:
      - name: shm-volume
        emptyDir: {medium: Memory}
      - name: datasets
        persistentVolumeClaim: {claimName: datasets}
    extraVolumeMounts:
      - {name: shm-volume, mountPath: /dev/shm}
      - {name: datasets, mountPath: /home/jovyan/datasets, readOnly: true}
  profileList:
    - display_name: Minimal environment
      description: To avoid too much bells and whistles, Python.
      default: true
    - display_name: Datascience environment
      description: If you want the additional bells and whistles, Python, R, and Julia.
      kubespawner_override:
        image: quay.io/jupyter/datascience-notebook:2024-08-05
    - display_name: Spark environment
      slug: spark
      kubespawner_override:
        image: quay.io/jupyter/all-spark-notebook:2024-08-05
        cpu_limit: 8
        mem_limit: 32G
    - display_name: Learning Data Science
      description: Datascience Environment with Sample Notebooks
      kubespawner_override:
        image: quay.io/jupyter/datascience-notebook:2024-08-05
        lifecycle_hooks:
          postStart:
            exec:
              command: [sh, -c, "gitpuller https://github.com/data-8/materials-fa17 master materials-fa; "]
    - display_name: GPU server
      slug: gpu
      kubespawner_override:
        extra_resource_limits: {nvidia.com/gpu: "1"}
        tolerations:
          - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
    - display_name: Choose your own image
      slug: custom
      profile_options:
        image:
          display_name: Image
          choices:
            pytorch:
              display_name: PyTorch
              default: true
              kubespawner_override: {image: quay.io/jupyter/pytorch-notebook:2024-08-05}
            tensorflow:
              display_name: TensorFlow
              kubespawner_override: {image: quay.io/jupyter/tensorflow-notebook:2024-08-05}
          unlisted_choice:
            enabled: true
            display_name: Custom image
            validation_regex: "^.+:.+$"
            validation_message: Must be an image with a tag
            display_name_in_choices: Specify an existing docker image
            kubespawner_override: {image: "{value}"}
scheduling:
  userScheduler: {enabled: true, replicas: 2}
  podPriority: {enabled: false}
  userPlaceholder: {enabled: true, replicas: 0}
  corePods: {nodeAffinity: {matchNodePurpose: prefer}}
  userPods: {nodeAffinity: {matchNodePurpose: prefer}}
prePuller:
  hook: {enabled: true}
  continuous: {enabled: true}
  pullProfileListImages: true
  extraImages: {}
  pause: {image: {name: registry.k8s.io/pause, tag: "3.10"}}
ingress: {enabled: false}
cull:
  enabled: true
  users: false
  adminUsers: true
  removeNamedServers: false
  timeout: 3600
  every: 600
  concurrency: 10
  maxAge: 0
debug: {enabled: false}
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("z2jh")
    (folder / "config.yaml").write_text(Z2JH_VALUES)
    assert main(["migrate", "z2jh", str(folder / "config.yaml"), "-o", str(folder / "gpulab-values.yaml")]) == 0
    values = yaml.safe_load((folder / "gpulab-values.yaml").read_text())
    # the client secret is not carried (it is listed): the operator names their Secret
    values["secrets"] = {"oauthClientSecret": {"name": "github-oauth", "key": "client-secret"}}
    path = folder / "gpulab-values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, values


@pytest.fixture(scope="module")
def docs(converted):
    return render([converted[0]], kube_version=KUBERNETES)


def test_what_is_not_carried_is_listed_with_why():
    from gpulab.hub_config.migrate_z2jh import convert_z2jh

    _, notes = convert_z2jh(yaml.safe_load(Z2JH_VALUES))
    assert [note.split(": ")[0] for note in notes] == [
        "hub.config.GitHubOAuthenticator.client_secret", "hub.config.JupyterHub.admin_access",
        "hub.concurrentSpawnLimit", "hub.consecutiveFailureLimit", "hub.db",
        "scheduling.userScheduler", "scheduling.userPlaceholder", "scheduling.corePods", "prePuller.hook",
        "cull.concurrency"]


def test_the_converted_values_render_and_every_manifest_validates(docs):
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "DaemonSet"} == {
        f"gpulab-prepuller-{p}" for p in ("minimal-environment", "datascience-environment", "spark",
                                          "learning-data-science", "gpu", "custom")}
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_the_hubs_settings_load_in_gpulabs_loader_and_apply(docs, tmp_path):
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gpulab-hub"]
    (tmp_path / "gpulab.yaml").write_text(configmap["data"]["gpulab.yaml"])
    loaded = load_settings(tmp_path / "gpulab.yaml")  # schema, then load-time checks (overrides, options)
    values = loaded.values
    c = apply_config(loaded.settings, Config())
    assert c.JupyterHub.authenticator_class == "oauthenticator.github.GitHubOAuthenticator"
    assert values["auth"]["admin_users"] == ["alice"]
    assert values["spawner"]["kubernetes"]["home_storage"] == {"capacity": "20Gi", "storage_class": "standard-rwo"}
    assert values["spawner"]["environment"]["EDITOR"] == "vim"
    profiles = {p["id"]: p for p in values["profiles"]}
    assert profiles["minimal-environment"]["default"] and profiles["minimal-environment"]["memory"] == {
        "limit": "8Gi", "guarantee": "1Gi"}
    assert profiles["spark"]["kubespawner_override"]["mem_limit"] == "32G" and profiles["spark"]["memory"]["limit"] is None
    assert all(p["idle_timeout"] == 3600 for p in profiles.values())
    assert profiles["custom"]["profile_options"]["image"]["unlisted_choice"]["validation_regex"] == "^.+:.+$"
    assert configmap["data"]["extra-config-10-timeouts.py"] == "c.KubeSpawner.http_timeout = 120\n"


def test_extra_config_is_mounted_into_jupyterhub_config_d(docs):
    (hub,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gpulab-hub"]
    (config,) = [v for v in hub["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    assert config["configMap"]["items"] == [{"key": "gpulab.yaml", "path": "gpulab.yaml"},
                                            {"key": "extra-config-10-timeouts.py", "path": "jupyterhub_config.d/10-timeouts.py"}]
