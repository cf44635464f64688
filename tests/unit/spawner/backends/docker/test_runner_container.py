"""A run's container on the docker backend, as the pure builder makes it (runner_container.py);
tests/hub/extensions/scheduler/test_container_runs.py runs such containers for real."""

from __future__ import annotations

from gpulab.compute.limits import Limits
from gpulab.extensions.scheduler.service_settings import SchedulerServiceSettings
from gpulab.spawner.backends.docker.runner_container import (RUN_LABEL, ContainerEngine, container_name,
                                                                    run_container_settings, wrapper_command)


RUN = "0b7c3c43-5f4f-4c39-a1a4-2b8c1f0b6d1e"
GPU = "GPU-5f1b0a36-1f7c-9a3e-6c4e-0c2b9d7e8f10"


def settings(**changes) -> dict:
    return run_container_settings(**{
        "run_id": RUN, "image": "ghcr.io/gpulab/cpu:cpu-python-3.12", "env": {"GPULAB_RUN_URL": f"http://h/{RUN}/"},
        "limits": Limits(), "devices": [], "gpu_request": "nvidia", "uid": 1234, "gid": 1234, "groups": [1234, 3001],
        "home": "/home/gpulab-ann", "mounts": ["/srv/projects"], **changes})


def test_a_run_runs_as_its_owner_in_the_home_on_the_hosts_network():
    made = settings()
    assert made["name"] == container_name(RUN) and made["labels"] == {RUN_LABEL: RUN}
    assert made["command"] == ["python", "-m", "gpulab.extensions.scheduler.runner"]
    assert (made["user"], made["group_add"], made["working_dir"]) == ("1234:1234", ["3001"], "/home/gpulab-ann")
    assert made["volumes"] == {"/home/gpulab-ann": {"bind": "/home/gpulab-ann", "mode": "rw"},
                               "/srv/projects": {"bind": "/srv/projects", "mode": "rw"}}
    assert made["network_mode"] == "host"
    assert made["environment"]["HOME"] == "/home/gpulab-ann"
    assert made["environment"]["GPULAB_RUN_URL"] == f"http://h/{RUN}/"


def test_a_cpu_run_sees_no_gpu_and_a_gpu_run_asks_for_exactly_its_claim():
    cpu = settings()
    assert cpu["device_requests"] == [] and cpu["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    gpu = settings(devices=[GPU], env={"CUDA_VISIBLE_DEVICES": GPU})
    assert gpu["device_requests"] == [{"driver": "nvidia", "device_ids": [GPU], "capabilities": [["gpu"]]}]
    assert "NVIDIA_VISIBLE_DEVICES" not in gpu["environment"]
    assert settings(devices=[GPU], gpu_request="cdi")["device_requests"] == [
        {"driver": "cdi", "device_ids": [f"nvidia.com/gpu={GPU}"]}]


def test_the_profiles_limits_reach_the_container():
    made = settings(limits=Limits(cpu_limit=1.5, cpu_guarantee=0.5, memory_limit=2**30, memory_guarantee=2**29))
    assert (made["cpu_period"], made["cpu_quota"]) == (100_000, 150_000)
    assert (made["mem_limit"], made["mem_reservation"], made["cpu_shares"]) == (2**30, 2**29, 512)
    assert not {"mem_limit", "cpu_quota", "mem_reservation", "cpu_shares"} & set(settings())


def test_the_foreground_process_is_known_by_the_run_alone_and_the_engine_by_the_settings():
    assert wrapper_command("/usr/bin/python3", RUN) == [
        "/usr/bin/python3", "-m", "gpulab.spawner.backends.docker.runner_container", RUN]
    assert ContainerEngine.from_settings(SchedulerServiceSettings.of({})) is None
    assert ContainerEngine.from_settings(SchedulerServiceSettings.of({"container_engine": {
        "host": "unix:///run/podman/podman.sock", "gpu_request": "cdi", "mounts": ["/data"]}})) == \
        ContainerEngine("unix:///run/podman/podman.sock", "cdi", ("/data",))


def test_a_container_whose_engine_dropped_the_gpu_request_is_told_apart():
    from gpulab.compute.containers import devices_kept

    assert devices_kept({"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": [GPU]}]})
    assert not devices_kept({"DeviceRequests": None}) and not devices_kept({})
    assert not devices_kept({"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": []}]})
