"""Scheduled runs and jobs as Kubernetes Jobs (pure builders against literal dicts)."""

from __future__ import annotations

from gpulab.spawner.backends.kubernetes.job_manifests import (exit_code, home_claim, master_address, rendezvous_env,
                                                                 rendezvous_service, run_job, run_secret,
                                                                 split_credentials)
from tests.support.job_requests import CPU_P, GPU2_P, KUBE, MIG_P, PROJECTS, request


def test_a_gpu_run_asks_for_its_gpus_on_a_matching_node_and_never_retries_itself():
    job = run_job(request(GPU2_P), KUBE, PROJECTS, ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"])
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("batch/v1", "Job", "gpulab-run-r1")
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 720
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert "command" not in container and container["args"][-1] == "gpulab.extensions.scheduler.runner"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["NVIDIA-A100-SXM4-80GB"]  # the profile's models only
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert job["metadata"]["labels"]["gpulab.dev/run"] == "r1"
    assert spec["template"]["metadata"]["labels"]["gpulab.dev/profile"] == "gpu-2"


def test_a_mig_run_asks_for_its_slice_and_a_cpu_run_sees_no_gpu():
    mig = run_job(request(MIG_P), KUBE, PROJECTS, [])["spec"]["template"]["spec"]["containers"][0]
    assert mig["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    cpu = run_job(request(CPU_P, cuda=None, min_driver=None), KUBE, PROJECTS, [])["spec"]["template"]["spec"]
    assert not any(r.startswith("nvidia.com/") for r in cpu["containers"][0]["resources"]["limits"])
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in cpu["containers"][0]["env"]
    assert "tolerations" not in cpu and "affinity" not in cpu


def test_credentials_come_from_the_runs_secret_and_never_stand_in_the_job():
    runner_env = {"GPULAB_RUN_URL": "http://hub/run/r1/", "GPULAB_RUN_TOKEN": "s3cret",
                  "MLFLOW_TRACKING_URI": "http://hub/services/mlflow", "MLFLOW_TRACKING_TOKEN": "ml-s3cret",
                  "AWS_SECRET_ACCESS_KEY": "aws-s3cret", "DB_PASSWORD": "pw-s3cret"}
    plain, credentials = split_credentials(runner_env)
    assert sorted(plain) == ["GPULAB_RUN_URL", "MLFLOW_TRACKING_URI"]
    job = run_job(request(CPU_P, env=plain, secret_variables=tuple(credentials)), KUBE, PROJECTS, [])
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("GPULAB_RUN_TOKEN", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "gpulab-run-r1-token", "key": name}}}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://hub/services/mlflow"
    assert "s3cret" not in str(job)
    secret = run_secret("r1", "ml", credentials)
    assert secret["metadata"]["name"] == "gpulab-run-r1-token" and secret["stringData"] == credentials


def test_home_and_project_folders_are_mounted_like_the_owners_server():
    job = run_job(request(CPU_P, project_roles={"vision": "editor", "nlp": "viewer"}), KUBE, PROJECTS, [])
    pod = job["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"home": "home-alice", "gpulab-projects": "gpulab-projects"}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/home/jovyan"]["name"] == "home"
    assert mounts["/home/jovyan/projects/nlp"]["readOnly"] is True
    assert mounts["/home/jovyan/projects/vision"] == {"name": "gpulab-projects", "mountPath": "/home/jovyan/projects/vision",
                                                      "subPath": "projects/vision", "readOnly": False}
    no_home = run_job(request(CPU_P), {**KUBE, "home_storage": {"capacity": ""}}, PROJECTS, [])
    assert no_home["spec"]["template"]["spec"]["volumes"] == []
    assert home_claim("Émile.B") != home_claim("emile.b") and len(home_claim("x" * 80)) <= 53


def test_exit_codes_follow_the_job_and_its_pod():
    assert exit_code({"status": {"active": 1}}, []) is None
    assert exit_code({"status": {"succeeded": 1}}, []) == 0
    failed_pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 3}}}]}}
    assert exit_code({"status": {"failed": 1}}, [failed_pod]) == 3
    assert exit_code({"status": {"failed": 1}}, []) == 1  # e.g. the deadline passed before a pod ran


# ---------------------------------------------------------------- multi-node jobs

INDEX = {"valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}


def test_a_multi_node_job_is_an_indexed_job_with_torchruns_rendezvous():
    job = run_job(request(GPU2_P, nodes=2), KUBE, PROJECTS, [])
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == \
        ("Indexed", 2, 2, 0)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "gpulab-run-r1"
    env = pod["containers"][0]["env"]
    assert env[-9:] == [
        {"name": "MASTER_ADDR", "value": "gpulab-run-r1-0.gpulab-run-r1.ml.svc"},
        {"name": "MASTER_PORT", "value": "29500"},
        {"name": "NODE_RANK", **INDEX}, {"name": "RANK", **INDEX}, {"name": "WORLD_SIZE", "value": "2"},
        {"name": "PET_MASTER_ADDR", "value": "gpulab-run-r1-0.gpulab-run-r1.ml.svc"},
        {"name": "PET_MASTER_PORT", "value": "29500"},
        {"name": "PET_NODE_RANK", **INDEX}, {"name": "PET_NNODES", "value": "2"},
    ]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"  # per node
    single = run_job(request(GPU2_P), KUBE, PROJECTS, [])
    assert "completionMode" not in single["spec"] and "subdomain" not in single["spec"]["template"]["spec"]
    assert not any(e["name"] == "MASTER_ADDR" for e in single["spec"]["template"]["spec"]["containers"][0]["env"])
    assert rendezvous_env("r1", "ml", 3)[4] == {"name": "WORLD_SIZE", "value": "3"}


def test_the_headless_service_names_every_pod_before_it_is_ready():
    assert rendezvous_service("r1", "ml") == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "gpulab-run-r1", "namespace": "ml", "labels": {
            "app.kubernetes.io/part-of": "gpulab", "app.kubernetes.io/component": "scheduled-run",
            "gpulab.dev/run": "r1"}},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"gpulab.dev/run": "r1"},
                 "ports": [{"name": "rendezvous", "port": 29500, "targetPort": 29500}]},
    }
    assert master_address("r1", "ml") == "gpulab-run-r1-0.gpulab-run-r1.ml.svc"


def test_an_indexed_job_ends_when_every_pod_succeeded_or_one_failed():
    two = {"spec": {"completions": 2}}
    assert exit_code({**two, "status": {"succeeded": 1, "active": 1}}, []) is None
    assert exit_code({**two, "status": {"succeeded": 2}}, []) == 0
    failed_pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 9}}}]}}
    assert exit_code({**two, "status": {"succeeded": 1, "failed": 1}}, [failed_pod]) == 9
