"""Prometheus exposition of the GPUs held now (pure: readings in, text out).

Per device: utilisation and memory in use, labelled with the holder (user), the server or run,
the profile and the project; per user: how many devices they hold.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from gpulab.compute.usage_sampler import HeldDevice


def holder_labels(held: HeldDevice) -> dict[str, str]:
    kind, _, name = held.purpose.partition(":")
    return {"device": held.uuid, "user": held.owner, "server": name if kind == "server" else "",
            "run": name if kind == "run" else "", "profile": held.profile, "project": held.project}


def exposition(held: list[HeldDevice]) -> bytes:
    registry = CollectorRegistry()
    labels = ["device", "user", "server", "run", "profile", "project"]
    utilization = Gauge("gpulab_gpu_utilization_percent", "GPU utilisation (NVML), by holder", labels,
                        registry=registry)
    memory = Gauge("gpulab_gpu_memory_used_bytes", "GPU memory in use (NVML), by holder", labels, registry=registry)
    allocated = Gauge("gpulab_gpus_allocated", "Devices (GPUs or MIG instances) each user holds", ["user"],
                      registry=registry)
    counts: dict[str, int] = {}
    for device in held:
        values = holder_labels(device)
        if device.reading.utilization is not None:
            utilization.labels(**values).set(device.reading.utilization)
        if device.reading.memory_used_mb is not None:
            memory.labels(**values).set(device.reading.memory_used_mb * 2**20)
        counts[device.owner] = counts.get(device.owner, 0) + 1
    for user, count in counts.items():
        allocated.labels(user=user).set(count)
    return generate_latest(registry)
