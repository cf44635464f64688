"""What a container of gpulab's gets from the compute layer (pure): exactly the claimed GPUs as
the engine's device requests, and a profile's limits in the engine's terms. Servers on the
docker backend (spawner/backends/docker/spawner.py) and scheduled runs in containers
(spawner/backends/docker/runner_container.py) build theirs from these.
"""

from __future__ import annotations

from gpulab.compute.limits import Limits

GPU_REQUESTS = ("nvidia", "cdi")


def gpu_device_requests(devices: list[str], style: str) -> list[dict]:
    """Device requests for exactly `devices` (GPU UUIDs from the ledger); [] for none (pure).

    "nvidia": what `docker run --gpus device=UUID,...` sends (the NVIDIA container toolkit).
    "cdi": the CDI names `nvidia-ctk cdi generate` gives each GPU (nvidia.com/gpu=UUID).
    """
    if not devices:
        return []
    if style == "cdi":
        return [{"driver": "cdi", "device_ids": [f"nvidia.com/gpu={uuid}" for uuid in devices]}]
    return [{"driver": "nvidia", "device_ids": list(devices), "capabilities": [["gpu"]]}]


def devices_kept(host_config: dict) -> bool:
    """Whether a created container still names GPU devices in its host config (pure): an engine
    may drop device requests without a word (Podman 4 through the Docker API does)."""
    return any(request.get("DeviceIDs") for request in host_config.get("DeviceRequests") or [])


def limit_settings(limits: Limits) -> tuple[dict, dict]:
    """(DockerSpawner traits, extra host config) for a profile's limits (pure). DockerSpawner's own
    mem_limit and cpu_limit carry the limits; guarantees become Docker's reservation and shares."""
    traits = {"mem_limit": limits.memory_limit, "cpu_limit": limits.cpu_limit}
    host: dict = {}
    if limits.memory_guarantee is not None:
        host["mem_reservation"] = limits.memory_guarantee
    if limits.cpu_guarantee is not None:
        host["cpu_shares"] = max(2, int(limits.cpu_guarantee * 1024))
    return traits, host
