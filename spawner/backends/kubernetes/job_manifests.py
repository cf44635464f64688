"""A scheduled run as a Kubernetes Job (pure builders, tested against literal dicts).

The Job's pod gets what a server of the same profile gets from the spawner (spawner/
manifests.py: image, resources with GPUs or a MIG slice, node selector, tolerations, driver
affinity, /dev/shm), the owner's home volume and project folders, and runs the runner
(`python -m gpulab.extensions.scheduler.runner`) through the image's entrypoint. The run's
token travels in a Secret of its own, never in the Job's spec. Kubernetes does not retry
(backoffLimit 0): the scheduler does, by its policies; activeDeadlineSeconds backs up the
scheduler's own timeout in case the scheduler is down when it passes.

A multi-node job (nodes > 1) is an Indexed Job with one pod per node (parallelism =
completions = nodes) and a headless Service that gives each pod a DNS name
(`<job>-<index>.<service>.<namespace>.svc`), with the rendezvous `torchrun` expects in each
pod's environment: MASTER_ADDR (node 0's name), MASTER_PORT, NODE_RANK (the pod's completion
index), WORLD_SIZE and RANK at node level (one process per node unless torchrun starts more),
and the same as torchrun's PET_* defaults, so `torchrun --nproc-per-node N train.py` needs no
rendezvous options. Gang semantics: the executor makes the Job only when all its pods fit on
the nodes' free GPUs (KubernetesExecutor.admit); Kubernetes' default scheduler then places them
one by one, so a pod made by someone else meanwhile can still leave one Pending (closing that
race needs a gang scheduler such as Kueue or Volcano; gpulab does not configure one). What
Kubernetes does guarantee with backoffLimit 0:
when any pod fails, the Job fails and its other pods are stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubespawner.slugs import safe_slug

from gpulab.compute.profiles import Profile
from gpulab.extensions.projects.storage.kubernetes import KubernetesSettings, project_volumes
from gpulab.spawner.backends.kubernetes.capacity import OWNER_ANNOTATION
from gpulab.spawner.backends.kubernetes.manifests import pod_changes

if TYPE_CHECKING:
    from gpulab.hub_config.typed_settings import SpawnerKubernetes

RUNNER_ARGS = ["python", "-m", "gpulab.extensions.scheduler.runner"]
RUN_LABEL = "gpulab.dev/run"
COMPONENT_LABELS = {"app.kubernetes.io/part-of": "gpulab", "app.kubernetes.io/component": "scheduled-run"}
RENDEZVOUS_PORT = 29500  # torchrun's default
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # the annotation an Indexed Job's pod carries
DEADLINE_MARGIN_SECONDS = 120  # the scheduler stops a run at its timeout; Kubernetes only if it did not
FINISHED_JOB_TTL_SECONDS = 3600


@dataclass(frozen=True)
class JobRequest:
    run_id: str
    owner: str
    namespace: str
    profile: Profile
    image: str
    environment_id: str
    cuda: str | None
    min_driver: str | None
    env: dict  # the runner's plain variables
    timeout_seconds: int
    project_roles: dict  # {project slug: role} of the owner
    secret_variables: tuple[str, ...] = ()  # the runner's variables held in the run's Secret (credentials)
    nodes: int = 1  # > 1: an Indexed Job, one pod per node, with a headless Service for the rendezvous
    project: str = ""  # the project its GPU-hours count towards (a label of its pods, as of a server's)


def job_name(run_id: str) -> str:
    return f"gpulab-run-{run_id}"


def secret_name(run_id: str) -> str:
    return f"gpulab-run-{run_id}-token"


def service_name(run_id: str) -> str:
    """The headless Service of a multi-node job (a Service and a Job may share a name)."""
    return job_name(run_id)


def master_address(run_id: str, namespace: str) -> str:
    """Node 0's DNS name: an Indexed Job's pod is called `<job>-<index>` in the Service's subdomain."""
    return f"{job_name(run_id)}-0.{service_name(run_id)}.{namespace}.svc"


def rendezvous_env(run_id: str, namespace: str, nodes: int) -> list[dict]:
    """The variables torchrun and torch.distributed's env:// read, the same in every pod but the rank."""
    index = {"valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
    master, port = master_address(run_id, namespace), str(RENDEZVOUS_PORT)
    return [
        {"name": "MASTER_ADDR", "value": master}, {"name": "MASTER_PORT", "value": port},
        {"name": "NODE_RANK", **index}, {"name": "RANK", **index}, {"name": "WORLD_SIZE", "value": str(nodes)},
        {"name": "PET_MASTER_ADDR", "value": master}, {"name": "PET_MASTER_PORT", "value": port},
        {"name": "PET_NODE_RANK", **index}, {"name": "PET_NNODES", "value": str(nodes)},
    ]


def rendezvous_service(run_id: str, namespace: str) -> dict:
    """A headless Service over the job's pods: DNS names for them, ready or not (node 0 is
    looked up before it answers)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service_name(run_id), "namespace": namespace, "labels": labels(run_id)},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {RUN_LABEL: run_id},
                 "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}]},
    }


def labels(run_id: str) -> dict:
    return {**COMPONENT_LABELS, RUN_LABEL: run_id}


def home_claim(owner: str) -> str:
    """The home volume the spawner gives the owner's default server (`home-{user_server}`)."""
    return f"home-{safe_slug(owner, max_length=48)}"


def is_credential(variable: str) -> bool:
    """Variables that must stand in a Secret, never in the Job (which more people may read)."""
    return variable.endswith(("_TOKEN", "_PASSWORD")) or "SECRET" in variable


def split_credentials(env: dict) -> tuple[dict, dict]:
    """(plain variables, credentials) of a runner's environment."""
    return ({k: v for k, v in env.items() if not is_credential(k)},
            {k: v for k, v in env.items() if is_credential(k)})


def run_secret(run_id: str, namespace: str, credentials: dict) -> dict:
    """The run's credentials (its token, its MLflow token), one key per variable."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret_name(run_id), "namespace": namespace, "labels": labels(run_id)},
        "stringData": dict(credentials),
    }


def run_job(request: JobRequest, given: SpawnerKubernetes | Mapping[str, Any], projects: KubernetesSettings,
            gpu_products: list[str]) -> dict:
    """The Job for one run. `given`: settings spawner.kubernetes (typed here, if a dict);
    `projects`: projects.kubernetes."""
    from gpulab.hub_config.typed_settings import SpawnerKubernetes

    kube = SpawnerKubernetes.of(given)
    changes = pod_changes(request.profile, request.image, request.environment_id, request.cuda,
                          request.min_driver, gpu_products, request.project)
    volumes, mounts = list(changes.volumes), list(changes.volume_mounts)
    if kube.home_storage.capacity:
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": home_claim(request.owner)}})
        mounts.append({"name": "home", "mountPath": "/home/jovyan"})
    project_vols, project_mounts = project_volumes(request.project_roles, projects)
    volumes += project_vols
    mounts += project_mounts
    env = [{"name": k, "value": str(v)} for k, v in sorted({**request.env, **changes.env}.items())]
    env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(request.run_id), "key": name}}}
            for name in sorted(request.secret_variables)]
    if request.nodes > 1:
        env += rendezvous_env(request.run_id, request.namespace, request.nodes)
    pod_labels = {**labels(request.run_id), **changes.labels}
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {"runAsUser": kube.uid, "runAsGroup": kube.fs_gid, "fsGroup": kube.fs_gid,
                            "runAsNonRoot": True},
        "containers": [{
            "name": "runner",
            "image": request.image,
            "imagePullPolicy": kube.image_pull_policy,
            "args": RUNNER_ARGS,  # the image's entrypoint (tini, gpulab-start) stays
            "workingDir": "/home/jovyan",
            "env": env,
            "resources": changes.resources,
            "volumeMounts": mounts,
            "securityContext": {"allowPrivilegeEscalation": False},
        }],
        "volumes": volumes,
    }
    if changes.node_selector:
        pod_spec["nodeSelector"] = changes.node_selector
    if changes.tolerations:
        pod_spec["tolerations"] = changes.tolerations
    if changes.affinity:
        pod_spec["affinity"] = changes.affinity
    annotations = {OWNER_ANNOTATION: request.owner}
    spec = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": request.timeout_seconds + DEADLINE_MARGIN_SECONDS,
        "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
        "template": {"metadata": {"labels": pod_labels, "annotations": annotations},
                     "spec": pod_spec},
    }
    if request.nodes > 1:
        pod_spec["subdomain"] = service_name(request.run_id)  # with the pod's hostname <job>-<index>: its DNS name
        spec.update(completionMode="Indexed", completions=request.nodes, parallelism=request.nodes)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(request.run_id), "namespace": request.namespace, "labels": pod_labels,
                     "annotations": annotations},
        "spec": spec,
    }


def exit_code(job: dict, pods: list[dict]) -> int | None:
    """None while the Job runs; 0 when all its pods succeeded; the first failed runner's exit code
    (or 1) when one failed, which fails the whole Job (backoffLimit 0)."""
    status = job.get("status") or {}
    if not status.get("failed"):
        done = (status.get("succeeded") or 0) >= ((job.get("spec") or {}).get("completions") or 1)
        return 0 if done else None
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode"):
                return int(terminated["exitCode"])
    return 1
