"""Which of the cluster's pods hold GPUs, for whom and for what (pure: pod objects in, holdings out).

On Kubernetes no claim is recorded when a pod gets its GPUs (the cluster's scheduler and the
device plugin allocate them), so the usage service keeps one usage interval per running pod
that holds GPUs, as the ledger keeps one per claim on one machine:

- a server's pod (KubeSpawner's): its user in the `hub.jupyter.org/username` annotation (the
  label holds a slug of the name), its server name in `hub.jupyter.org/servername` (none for
  the default server); purpose "server:<user>/<server>";
- a scheduled run's pod (the scheduler's Job, job_manifests): the run in the `gpulab.dev/run`
  label, its owner in the `gpulab.dev/owner` annotation; purpose "run:<id>" (each pod of a
  multi-node job is an interval of its own);
- both: the profile from the `gpulab.dev/profile` label, the project from the
  `gpulab.dev/project` label where the pod has one, GPUs from the containers'
  `nvidia.com/*` limits (whole GPUs and MIG instances, as quotas count them) and CPUs from
  their CPU limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpulab.compute.claims import Purpose
from gpulab.spawner.backends.kubernetes.job_manifests import RUN_LABEL
from gpulab.spawner.backends.kubernetes.capacity import USER_ANNOTATION, USER_LABEL, pod_gpus, pod_owner
from gpulab.spawner.backends.kubernetes.manifests import PROJECT_LABEL

SERVER_NAME_ANNOTATION = "hub.jupyter.org/servername"
PROFILE_LABEL = "gpulab.dev/profile"
CLAIM_PREFIX = "pod:"  # the usage ledger's claim ids of pods; the ledger's own are hex
CLAIM_ID_LENGTH = 32  # gpu_usage.claim_id's width


@dataclass(frozen=True)
class PodHolding:
    """A running pod that holds GPUs, as the usage ledger records it."""

    claim_id: str
    namespace: str
    pod: str
    owner: str
    purpose: str
    profile: str
    project: str
    gpus: int
    cpus: float  # the containers' CPU limits together (0: none set)


def pod_claim_id(uid: str) -> str:
    """The same pod always gets the same id, so a restarted service continues its interval."""
    return (CLAIM_PREFIX + uid.replace("-", ""))[:CLAIM_ID_LENGTH]


def cpu_cores(value) -> float:
    """A CPU quantity in cores: 2, "2", "1.5" or "500m"."""
    text = str(value).strip()
    if not text:
        return 0.0
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def pod_cpus(pod: dict) -> float:
    return sum(cpu_cores(((c.get("resources") or {}).get("limits") or {}).get("cpu") or 0)
               for c in pod.get("spec", {}).get("containers", []))


def pod_purpose(pod: dict, owner: str) -> str | None:
    """"server:<user>/<name>" or "run:<id>"; None for a pod that is neither of gpulab's."""
    meta = pod.get("metadata", {})
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if labels.get(RUN_LABEL):
        return str(Purpose.run(labels[RUN_LABEL]))
    if USER_ANNOTATION in annotations or USER_LABEL in labels:
        return str(Purpose.server(owner, annotations.get(SERVER_NAME_ANNOTATION, "")))
    return None


def pod_holding(pod: dict) -> PodHolding | None:
    """What a pod holds, if it is a running server's or run's pod with GPUs; None otherwise."""
    meta = pod.get("metadata", {})
    owner = pod_owner(pod)
    gpus = pod_gpus(pod)
    if not owner or not gpus or not meta.get("uid") or pod.get("status", {}).get("phase") != "Running":
        return None
    purpose = pod_purpose(pod, owner)
    if purpose is None:
        return None
    labels = meta.get("labels") or {}
    return PodHolding(
        claim_id=pod_claim_id(meta["uid"]), namespace=meta.get("namespace", ""), pod=meta.get("name", ""),
        owner=owner, purpose=purpose, profile=labels.get(PROFILE_LABEL, ""), project=labels.get(PROJECT_LABEL, ""),
        gpus=gpus, cpus=pod_cpus(pod))


def running_holdings(pods: list[dict]) -> dict[str, PodHolding]:
    """The holdings of `pods` by claim id."""
    return {h.claim_id: h for h in map(pod_holding, pods) if h is not None}
