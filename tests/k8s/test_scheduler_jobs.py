"""Scheduled runs and jobs on the Kubernetes backend: each run a Job, end to end without a cluster.

A real hub and scheduler service talk to kmock's emulated API (tests/k8s/fake_cluster.py).
The test Job controller makes each Job's pod; the test kubelet runs the pod's command (the
runner, with the token resolved from the run's Secret) as a local process, which executes
the notebook with real Papermill and reports back over HTTP, as a pod does.

Not covered: images (the runner runs from this Python environment, not the environment's
image and its entrypoint), the NVIDIA device plugin, the real Job controller's retries,
deadlines and TTLs, volumes (nothing is mounted), and container isolation.
"""

from __future__ import annotations

import base64
import json

import pytest

from gpulab.extensions.scheduler.snapshots import pack
from gpulab.hub_config.client import ClientError, HubClient
from tests.support.cluster import NAMESPACE, env_of
from tests.support.hub import wait_for
from tests.support.scheduler_runs import FINAL, notebook, outputs_text


@pytest.fixture(scope="module")
def owner(hub) -> HubClient:
    hub.create_user("jobber")
    return HubClient(hub.url, hub.user_token("jobber"))


def run_now(client: HubClient, nb: dict, **fields) -> dict:
    return client.request("POST", "services/scheduler/api/runs", {"name": "on-k8s", "notebook": nb, **fields})


def wait_status(client: HubClient, run_id: str, statuses, timeout: float = 120) -> dict:
    return wait_for(lambda: (r := client.request("GET", f"services/scheduler/api/runs/{run_id}"))["status"]
                    in statuses and r, timeout, f"run {run_id} to reach {statuses}")


def job_of(cluster, run_id: str) -> dict | None:
    jobs = cluster.get(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")["items"]
    return next((j for j in jobs if j["metadata"]["name"] == f"gpulab-run-{run_id}"), None)


def secret_names(cluster) -> set[str]:
    return {s["metadata"]["name"] for s in cluster.get(f"/api/v1/namespaces/{NAMESPACE}/secrets")["items"]}


def test_a_run_is_a_job_whose_pod_runs_the_notebook(hub, cluster, owner):
    run = run_now(owner, notebook("print('hello from', 6 * 7)", parameters="x = 1"), parameters={"x": 2})
    job = wait_for(lambda: job_of(cluster, run["id"]), 30, "the run's Job")
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    for credential in ("GPULAB_RUN_TOKEN", "MLFLOW_TRACKING_TOKEN"):  # from the run's Secret, not the Job
        assert env[credential]["valueFrom"]["secretKeyRef"]["name"] == f"gpulab-run-{run['id']}-token"
    assert "CUDA_VISIBLE_DEVICES" not in env and env["NVIDIA_VISIBLE_DEVICES"]["value"] == "void"
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "4000000000"}

    done = wait_status(owner, run["id"], FINAL)
    assert done["status"] == "COMPLETED" and done["mlflow_run_id"], done  # the MLflow token reached the pod
    executed = owner.request("GET", f"services/scheduler/api/runs/{run['id']}/files/output.ipynb")
    assert "hello from 42" in outputs_text(executed)
    assert "x = 2" in json.dumps(executed)  # the parameters went in
    wait_for(lambda: f"gpulab-run-{run['id']}-token" not in secret_names(cluster), 30, "the token Secret to go")


def test_a_runner_that_dies_leaves_its_pods_log(hub, cluster, owner):
    """The kernel kills the runner before it can report: the run fails with the exit code and
    the pod's output (what the runner logged up to then) is the run's log.txt."""
    run = run_now(owner, notebook("print('the last words', 6 * 7)",
                                  "import os, signal, time; os.kill(os.getppid(), signal.SIGKILL); time.sleep(5)"))
    done = wait_status(owner, run["id"], FINAL)
    assert done["status"] == "FAILED" and "exited with status 137 without reporting" in done["message"], done
    assert "log.txt" in done["outputs"]
    log = owner.download(f"services/scheduler/api/runs/{run['id']}/files/log.txt").decode()
    assert "the last words 42" in log


def test_a_gpu_run_asks_the_device_plugin_for_its_gpu(hub, cluster, owner):
    run = run_now(owner, notebook("import os; print('visible', os.environ.get('CUDA_VISIBLE_DEVICES'))"),
                  profile="a100")
    job = wait_for(lambda: job_of(cluster, run["id"]), 30, "the run's Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0] == {"key": "nvidia.com/gpu.product", "operator": "In",
                                               "values": ["NVIDIA-A100-SXM4-80GB"]}
    done = wait_status(owner, run["id"], FINAL)
    assert done["status"] == "COMPLETED", done
    pods = [p for p in cluster.pods() if p["metadata"].get("labels", {}).get("job-name") == f"gpulab-run-{run['id']}"]
    assert pods and pods[0]["spec"]["nodeName"].startswith("gpu-node")


def test_stopping_a_run_deletes_its_job_and_secret(hub, cluster, owner):
    run = run_now(owner, notebook("import time; time.sleep(300)"))
    wait_status(owner, run["id"], ("RUNNING",))
    wait_for(lambda: (owner.request("GET", f"services/scheduler/api/runs/{run['id']}")["kernel_ready_at"]), 60,
             "the kernel in the pod")
    owner.request("POST", f"services/scheduler/api/runs/{run['id']}/stop")
    assert wait_status(owner, run["id"], FINAL)["status"] == "STOPPED"
    wait_for(lambda: job_of(cluster, run["id"]) is None, 30, "the Job to go")
    wait_for(lambda: f"gpulab-run-{run['id']}-token" not in secret_names(cluster), 30, "the Secret to go")
    wait_for(lambda: not [p for p in cluster.pods() if p["metadata"].get("labels", {}).get("gpulab.dev/run") == run["id"]],
             30, "the run's pod to go with its Job")


def test_quotas_hold_for_gpu_runs_as_for_servers(hub, cluster):
    """capped may hold 1 GPU: a GPU run waits, with the reason and no Job, while capped's GPU
    server runs; then while capped's first run holds it (a run's pod counts too)."""
    hub.create_user("capped")
    client = HubClient(hub.url, hub.user_token("capped"))
    hub.spawn("capped", options={"profile": "a100"})
    first = run_now(client, notebook("import time; time.sleep(6); print('first done')"), profile="a100")
    waiting = wait_status(client, first["id"], ("WAITING",), 30)
    assert "waiting for 1 A100: over quota: capped holds 1 of 1 GPUs allowed and this needs 1 more" in waiting["message"]
    assert job_of(cluster, first["id"]) is None

    hub.stop_server("capped")
    wait_status(client, first["id"], ("RUNNING",), 60)
    second = run_now(client, notebook("print('second done')"), profile="a100")
    waiting = wait_status(client, second["id"], ("WAITING",), 30)
    assert "over quota: capped holds 1 of 1 GPUs allowed" in waiting["message"]
    assert wait_status(client, first["id"], FINAL)["status"] == "COMPLETED"
    assert wait_status(client, second["id"], FINAL)["status"] == "COMPLETED"


def test_a_two_node_job_gets_one_rendezvous_in_both_pods(hub, cluster, owner, tmp_path):
    """`gpulab run --nodes 2`: an Indexed Job of two pods and a headless Service; each pod's
    runner runs the command with the same master, port and world size, and its own rank."""
    (tmp_path / "show.sh").write_text(
        "echo rendezvous rank=$NODE_RANK/$RANK world=$WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT "
        "pet=$PET_NODE_RANK/$PET_NNODES@$PET_MASTER_ADDR:$PET_MASTER_PORT index=$JOB_COMPLETION_INDEX\n")
    run = owner.request("POST", "services/scheduler/api/jobs", {
        "name": "ddp", "kind": "command", "command": ["sh", "show.sh"], "nodes": 2,
        "snapshot": base64.b64encode(pack(tmp_path)).decode()})
    name = f"gpulab-run-{run['id']}"
    job = wait_for(lambda: job_of(cluster, run["id"]), 30, "the job's Indexed Job")
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
    service = cluster.get(f"/api/v1/namespaces/{NAMESPACE}/services/{name}")
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["selector"] == {"gpulab.dev/run": run["id"]}
    pods = wait_for(lambda: len(p := [p for p in cluster.pods()
                                      if p["metadata"].get("labels", {}).get("job-name") == name]) == 2 and p,
                    30, "both pods")
    assert sorted((p["spec"]["hostname"], p["spec"]["subdomain"]) for p in pods) == [(f"{name}-0", name),
                                                                                     (f"{name}-1", name)]
    done = wait_status(owner, run["id"], FINAL)
    assert (done["status"], done["exit_code"], done["nodes"]) == ("COMPLETED", 0, 2), done
    log = owner.request("GET", f"services/scheduler/api/runs/{run['id']}/log")["text"]
    master = f"{name}-0.{name}.{NAMESPACE}.svc"
    for rank in (0, 1):
        assert f"==> node {rank} " in log
        assert (f"rendezvous rank={rank}/{rank} world=2 master={master}:29500 pet={rank}/2@{master}:29500 "
                f"index={rank}") in log, log
    wait_for(lambda: name not in {s["metadata"]["name"] for s in
                                  cluster.get(f"/api/v1/namespaces/{NAMESPACE}/services")["items"]},
             30, "the job's Service to go")


def test_a_multi_node_gpu_job_waits_until_all_its_pods_fit(hub, cluster, owner, tmp_path):
    """Issue 21, gang admission: the emulated cluster has 2 + 2 A100s; a job of 5 one-GPU pods
    waits in gpulab's queue with the reason, and no Job (no pod, no GPU held) is made for it."""
    (tmp_path / "noop.sh").write_text("true\n")
    run = owner.request("POST", "services/scheduler/api/jobs", {
        "name": "too-wide", "kind": "command", "command": ["sh", "noop.sh"], "nodes": 5, "profile": "a100",
        "snapshot": base64.b64encode(pack(tmp_path)).decode()})
    waiting = wait_for(lambda: (r := owner.request("GET", f"services/scheduler/api/runs/{run['id']}"))["message"]
                       and r, 60, "the job to wait with its reason")
    assert waiting["status"] == "WAITING", waiting
    assert "all 5 pods at once need 1 free GPU(s) each; the cluster has room for 4 now" in waiting["message"]
    assert job_of(cluster, run["id"]) is None
    owner.request("POST", f"services/scheduler/api/runs/{run['id']}/stop")
    assert wait_status(owner, run["id"], FINAL)["status"] == "STOPPED"


def test_a_running_jobs_log_follows_its_pods_output(hub, cluster, owner, tmp_path):
    """Issue 21: the pod's output reaches the run's log while it runs, not only at its end."""
    (tmp_path / "slow.sh").write_text("echo started-now\nsleep 15\necho finished-now\n")
    run = owner.request("POST", "services/scheduler/api/jobs", {
        "name": "slow", "kind": "command", "command": ["sh", "slow.sh"],
        "snapshot": base64.b64encode(pack(tmp_path)).decode()})

    def log_while_running():
        current = owner.request("GET", f"services/scheduler/api/runs/{run['id']}")
        text = owner.request("GET", f"services/scheduler/api/runs/{run['id']}/log")["text"]
        return current["status"] == "RUNNING" and "started-now" in text and text

    seen = wait_for(log_while_running, 60, "the job's first line in its log while it runs")
    assert "finished-now" not in seen
    done = wait_status(owner, run["id"], FINAL)
    assert done["status"] == "COMPLETED", done
    text = owner.request("GET", f"services/scheduler/api/runs/{run['id']}/log")["text"]
    assert text.index("started-now") < text.index("finished-now")


def test_a_runs_profile_options_shape_its_pod_as_a_servers(hub, cluster, owner):
    """Issue 20: the scheduler takes a profile's options as the spawn API does, and the Job's pod
    gets the same image, environment and memory as a server's pod with the same choices (the
    server's through KubeSpawner itself); gpulab's own run labels are kept."""
    options = {"image": "scipy"}
    run = run_now(owner, notebook("print('tuned')"), profile="tuned", profile_options=options)
    assert run["profile_options"] == options
    job = wait_for(lambda: job_of(cluster, run["id"]), 30, "the run's Job")
    template = job["spec"]["template"]
    runner = template["spec"]["containers"][0]
    hub.create_user("tuner")
    hub.spawn("tuner", options={"profile": "tuned", **options})
    server = cluster.pod_of("tuner")["spec"]["containers"][0]
    assert runner["image"] == server["image"] == "test/scipy:2"
    assert {e["name"]: e.get("value") for e in runner["env"]}["FLAVOUR"] == env_of(cluster.pod_of("tuner"))["FLAVOUR"]
    assert int(runner["resources"]["limits"]["memory"]) == int(server["resources"]["limits"]["memory"]) == 6 << 30
    assert template["metadata"]["labels"]["team"] == cluster.pod_of("tuner")["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["labels"]["gpulab.dev/run"] == run["id"]
    assert wait_status(owner, run["id"], FINAL)["status"] == "COMPLETED"
    hub.stop_server("tuner")


@pytest.mark.parametrize("options, message", [
    ({"image": "gpu"}, "unknown choice 'gpu' for option 'image' of profile 'tuned'; choices: minimal, scipy"),
    ({"image--unlisted-choice": "evil/x"}, "'evil/x' is refused for option 'image' of profile 'tuned': "
                                           "images come from test/"),
    ({"colour": "red"}, "unknown option(s) colour for profile 'tuned'; its options: image"),
])
def test_a_refused_profile_option_is_a_400_with_the_reason(hub, owner, options, message):
    with pytest.raises(ClientError) as refused:
        run_now(owner, notebook("1"), profile="tuned", profile_options=options)
    assert refused.value.status == 400 and message in refused.value.message
