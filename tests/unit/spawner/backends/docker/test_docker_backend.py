"""The docker backend's pure part: what one spawn asks of the engine (image, limits, GPUs as
device requests, the user's account, the home mount), compared with literal DockerSpawner
settings. What this does not cover: an engine creating the container (tests/hub/
test_container_backend.py runs real ones and compares their inspect output with a stock
DockerSpawner's); a real GPU (none here: the NVIDIA toolkit and CDI are never exercised).
"""

from __future__ import annotations

from traitlets.config import Config

from gpulab.compute.limits import Limits
from gpulab.hub_config.apply import apply_config
from gpulab.spawner.backends import backend
from gpulab.hub_config.settings import bundled_schema, with_defaults
from gpulab.hub_config.typed_settings import Settings
from gpulab.compute.containers import gpu_device_requests, limit_settings
from gpulab.spawner.backends.docker.spawner import container_settings

GPU_A = "GPU-6f1c3a1e-0000-4000-8000-000000000001"
GPU_B = "GPU-6f1c3a1e-0000-4000-8000-000000000002"


def test_a_cpu_profile_gets_no_device_and_the_users_account():
    settings = container_settings(image="ghcr.io/gpulab/cpu:cpu-python-3.12", limits=Limits(), devices=[],
                                  gpu_request="nvidia", uid=1201, gid=1201, groups=[1201, 1305],
                                  home="/home/gpulab-alice", mounts=[])
    assert settings == {
        "image": "ghcr.io/gpulab/cpu:cpu-python-3.12",
        "mem_limit": None,
        "cpu_limit": None,
        "volumes": {"/home/gpulab-alice": {"bind": "/home/gpulab-alice", "mode": "rw"}},
        "extra_create_kwargs": {"user": "1201:1201", "working_dir": "/home/gpulab-alice"},
        "extra_host_config": {"network_mode": "host", "group_add": ["1305"], "device_requests": []},
    }


def test_a_gpu_profile_gets_exactly_its_claimed_devices_and_its_limits():
    limits = Limits(cpu_limit=4.0, cpu_guarantee=1.5, memory_limit=16 * 2**30, memory_guarantee=8 * 2**30)
    settings = container_settings(image="ghcr.io/gpulab/pytorch:cuda12-pytorch-2.15", limits=limits,
                                  devices=[GPU_A, GPU_B], gpu_request="nvidia", uid=1201, gid=1201, groups=[1201],
                                  home="/home/gpulab-alice", mounts=["/data/shared"])
    assert settings == {
        "image": "ghcr.io/gpulab/pytorch:cuda12-pytorch-2.15",
        "mem_limit": 17179869184,
        "cpu_limit": 4.0,
        "volumes": {"/home/gpulab-alice": {"bind": "/home/gpulab-alice", "mode": "rw"},
                    "/data/shared": {"bind": "/data/shared", "mode": "rw"}},
        "extra_create_kwargs": {"user": "1201:1201", "working_dir": "/home/gpulab-alice"},
        "extra_host_config": {"mem_reservation": 8589934592, "cpu_shares": 1536, "network_mode": "host",
                              "group_add": [],
                              "device_requests": [{"driver": "nvidia", "device_ids": [GPU_A, GPU_B],
                                                   "capabilities": [["gpu"]]}]},
    }


def test_cdi_names_each_claimed_device():
    assert gpu_device_requests([GPU_A], "cdi") == [{"driver": "cdi", "device_ids": [f"nvidia.com/gpu={GPU_A}"]}]
    assert gpu_device_requests([], "cdi") == []
    assert gpu_device_requests([], "nvidia") == []


def test_limits_map_like_dockerspawners_own_traits():
    assert limit_settings(Limits()) == ({"mem_limit": None, "cpu_limit": None}, {})
    assert limit_settings(Limits(cpu_guarantee=0.001)) == ({"mem_limit": None, "cpu_limit": None}, {"cpu_shares": 2})


def test_the_docker_backend_is_configured_from_the_settings():
    schema = bundled_schema()
    values = with_defaults(schema, {"spawner": {"backend": "docker", "local": {"account_prefix": "lab-"},
                                                "docker": {"host": "unix:///run/podman/podman.sock",
                                                           "gpu_request": "cdi", "mounts": ["/data"]}}})
    c = apply_config(Settings.from_values(values), Config(), extensions=[])
    assert c.JupyterHub.spawner_class == backend("docker").spawner_class
    assert c.ContainerSpawner.account_prefix == "lab-"
    assert c.ContainerSpawner.client_kwargs == {"base_url": "unix:///run/podman/podman.sock"}
    assert c.ContainerSpawner.gpu_request == "cdi"
    assert c.ContainerSpawner.mounts == ["/data"]
    assert c.ContainerSpawner.pull_policy == "ifnotpresent"
