"""KubeSpawner overrides applied to a run's Job pod (pure): a profile's, then each chosen option's.

A server's pod gets them through KubeSpawner's own traits; a run's Job is built by gpulab
(job_manifests.py), so the KubeSpawner settings that shape a pod are translated here, with
KubeSpawner's merge semantics (kubespawner.utils.recursive_update: a dict is merged, a None
value removes its key, anything else replaces). Settings that only concern an interactive
server (its start and HTTP timeouts, default URL, lifecycle hooks, ...) have no meaning for a
run and are left out; any other setting is refused when the run is asked for, never ignored.
"""

from __future__ import annotations

import copy

from jupyterhub.traitlets import ByteSpecification

APPLIED = ("image", "image_pull_policy", "cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee",
           "extra_resource_limits", "extra_resource_guarantees", "environment", "node_selector", "tolerations",
           "volumes", "volume_mounts", "extra_labels", "extra_annotations")
# What only an interactive server uses: a run's pod is not a Jupyter server behind the proxy.
SERVER_ONLY = ("start_timeout", "http_timeout", "default_url", "lifecycle_hooks", "port", "cmd", "args",
               "notebook_dir", "disable_user_config", "slug")


def unsupported(overrides: list[dict]) -> list[str]:
    """Settings these overrides set that a run cannot honour."""
    return sorted({key for override in overrides for key in override} - set(APPLIED) - set(SERVER_ONLY))


def _memory(value):
    return None if value is None else ByteSpecification().validate(None, value)


def apply_overrides(job: dict, overrides: list[dict]) -> dict:
    """The Job with `overrides` applied to its pod, in order (a new dict)."""
    from kubespawner.utils import recursive_update  # kubespawner's import is the cluster client's: not at a local start

    overrides = [o for o in overrides if o]
    if not overrides:
        return job
    job = copy.deepcopy(job)
    template = job["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    resources = container.setdefault("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    plain_env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    settings = {
        "image": container["image"], "image_pull_policy": container.get("imagePullPolicy"),
        "cpu_limit": limits.get("cpu"), "cpu_guarantee": requests.get("cpu"),
        "mem_limit": limits.get("memory"), "mem_guarantee": requests.get("memory"),
        "extra_resource_limits": {k: v for k, v in limits.items() if k not in ("cpu", "memory")},
        "extra_resource_guarantees": {k: v for k, v in requests.items() if k not in ("cpu", "memory")},
        "environment": dict(plain_env), "node_selector": dict(pod.get("nodeSelector", {})),
        "tolerations": list(pod.get("tolerations", [])), "volumes": list(pod.get("volumes", [])),
        "volume_mounts": list(container.get("volumeMounts", [])), "extra_labels": {}, "extra_annotations": {},
    }
    for override in overrides:
        for key, value in override.items():
            if key not in APPLIED:
                continue
            value = copy.deepcopy(value)
            if key in ("mem_limit", "mem_guarantee"):
                value = _memory(value)
            if isinstance(value, dict) and isinstance(settings[key], dict):
                recursive_update(settings[key], value)
            else:
                settings[key] = value
    container["image"] = settings["image"]
    if settings["image_pull_policy"]:
        container["imagePullPolicy"] = settings["image_pull_policy"]
    limits = {**settings["extra_resource_limits"],
              **{k: str(v) for k, v in (("cpu", settings["cpu_limit"]), ("memory", settings["mem_limit"]))
                 if v is not None}}
    requests = {**settings["extra_resource_guarantees"],
                **{k: str(v) for k, v in (("cpu", settings["cpu_guarantee"]), ("memory", settings["mem_guarantee"]))
                   if v is not None}}
    container["resources"] = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    others = [e for e in container.get("env", []) if "value" not in e]  # secrets, the rendezvous
    container["env"] = [{"name": k, "value": str(v)} for k, v in sorted(settings["environment"].items())] + others
    for key, field, target in (("node_selector", "nodeSelector", pod), ("tolerations", "tolerations", pod),
                               ("volumes", "volumes", pod), ("volume_mounts", "volumeMounts", container)):
        if settings[key]:
            target[field] = settings[key]
        else:
            target.pop(field, None)
    metadata = template.setdefault("metadata", {})
    # gpulab's own labels and annotations (the run, its owner) win: the scheduler finds its pods by them
    metadata["labels"] = {**settings["extra_labels"], **metadata.get("labels", {})}
    metadata["annotations"] = {**settings["extra_annotations"], **metadata.get("annotations", {})}
    return job
