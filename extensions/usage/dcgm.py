"""GPU readings from NVIDIA's DCGM exporter, by the pod using each device (pure: text in, readings out).

The exporter (a DaemonSet: one per GPU node) writes each device's metrics in Prometheus' text
format with the labels `gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, on a MIG instance
`GPU_I_PROFILE` and `GPU_I_ID`, maybe `Hostname`, and, with its Kubernetes mapping on (the GPU
Operator's default), `container`, `namespace` and `pod` of the pod the device is allocated to
(`pod_name` and `pod_namespace` in exporters before 2.x):

    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-…",pci_bus_id="…",device="nvidia0",modelName="…",
                         Hostname="…",container="notebook",namespace="gpulab",pod="jupyter-ann"} 87

Utilisation is DCGM_FI_DEV_GPU_UTIL (percent). A MIG instance reports none (as with NVML);
where the profiling metric DCGM_FI_PROF_GR_ENGINE_ACTIVE (a ratio) is exported, it stands in.
Memory in use is DCGM_FI_DEV_FB_USED (MiB). Devices no pod uses are left out, and so are DCGM's
"blank" values (huge numbers meaning "not supported").
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gpulab.compute.usage import Reading

UTILIZATION = "DCGM_FI_DEV_GPU_UTIL"
ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
MEMORY_USED = "DCGM_FI_DEV_FB_USED"
BLANK_FROM = 2**40  # DCGM's blank values are near 2**63

PodKey = tuple[str, str]  # (namespace, pod name)


def device_key(labels: dict[str, str]) -> str:
    """The GPU's UUID, with the instance's id for a MIG instance (several share a UUID)."""
    uuid = labels.get("UUID") or labels.get("uuid") or f"gpu{labels.get('gpu', '?')}"
    return f"{uuid}/{labels['GPU_I_ID']}" if labels.get("GPU_I_ID") else uuid


def pod_of(labels: dict[str, str]) -> PodKey | None:
    pod = labels.get("pod") or labels.get("pod_name")
    return (labels.get("namespace") or labels.get("pod_namespace") or "", pod) if pod else None


def pod_readings(text: str) -> dict[PodKey, dict[str, Reading]]:
    """Each pod's devices with their utilisation (percent) and memory in use (MiB)."""
    found: dict[PodKey, dict[str, dict[str, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            pod = pod_of(sample.labels)
            if sample.name not in (UTILIZATION, ENGINE_ACTIVE, MEMORY_USED) or pod is None:
                continue
            if not 0 <= sample.value < BLANK_FROM:
                continue
            found.setdefault(pod, {}).setdefault(device_key(sample.labels), {})[sample.name] = sample.value
    return {pod: {device: reading(values) for device, values in devices.items()} for pod, devices in found.items()}


def reading(values: dict[str, float]) -> Reading:
    if UTILIZATION in values:
        percent: int | None = round(values[UTILIZATION])
    elif ENGINE_ACTIVE in values:
        percent = round(100 * values[ENGINE_ACTIVE])
    else:
        percent = None
    memory = round(values[MEMORY_USED]) if MEMORY_USED in values else None
    return Reading(None if percent is None else min(100, percent), memory)
