"""A run's runner in a container of its environment's image (the docker backend).

On the docker backend a server runs in its environment's image, so a scheduled run of the
same notebook does too: same Python, same packages, same CUDA libraries. The launcher
(runner_process.ProcessLauncher, as root through the scheduler's helper) starts a small
foreground process, this module's `main`, in place of the runner process. It is to the
container what `docker run` without `-d` is: it creates and starts the container, copies the
container's output to its own (the run's log file), stops the container on SIGTERM, and exits
with the container's exit status. So everything the launcher does for a runner process works
unchanged: the GPU claim lives as long as this process, a restart of the scheduler or its
helper finds it by its process reference, and `stop` signals it.

The container is built like a server's (spawner/backends/docker/spawner.py): the owner's account (uid, gid,
groups), their home and the configured host folders mounted at the same path, the host's
network (the runner reaches the scheduler on the same loopback address as a process runner),
the profile's limits, and exactly the claimed GPUs as device requests. Its settings reach this
process on stdin: they hold the run's token, which a command line would show to every user.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpulab.compute.limits import Limits
from gpulab.compute.containers import devices_kept, gpu_device_requests, limit_settings

if TYPE_CHECKING:  # typed settings (pydantic) only in the scheduler service, not in runners
    from gpulab.extensions.scheduler.service_settings import SchedulerServiceSettings

RUNNER = "gpulab.extensions.scheduler.runner"
CONTAINER_RUNNER = "gpulab.spawner.backends.docker.runner_container"
RUN_LABEL = "dev.gpulab.run"
STOP_SECONDS = 3  # SIGTERM to the runner (and its kernel, through tini), then SIGKILL
CPU_PERIOD = 100_000  # microseconds: Docker's default CFS period


@dataclass(frozen=True)
class ContainerEngine:
    """The docker backend's engine, as runs use it (from spawner.docker)."""

    host: str  # the Docker API's URL ("": DOCKER_HOST or the default socket)
    gpu_request: str  # "nvidia" or "cdi" (spawner/backends/docker/spawner.py's gpu_device_requests)
    mounts: tuple[str, ...] = ()  # host folders every run gets at the same path (also the projects root)

    @classmethod
    def from_settings(cls, settings: SchedulerServiceSettings) -> "ContainerEngine | None":
        engine = settings.container_engine
        return None if engine is None else cls(engine.host, engine.gpu_request, engine.mounts)


def container_name(run_id: str) -> str:
    return f"gpulab-run-{run_id}"


def wrapper_command(python: str, run_id: str) -> list[str]:
    """The foreground process's command line: the run id only (the launcher knows it by it)."""
    return [python, "-m", CONTAINER_RUNNER, run_id]


def run_container_settings(*, run_id: str, image: str, env: dict, limits: Limits, devices: list[str],
                           gpu_request: str, uid: int, gid: int, groups: list[int], home: str,
                           mounts: list[str]) -> dict:
    """The keyword arguments of docker-py's `containers.create` for one run (pure)."""
    traits, host = limit_settings(limits)
    settings: dict = {
        "image": image,
        "command": ["python", "-m", RUNNER],  # through the image's entrypoint (tini, gpulab-start)
        "name": container_name(run_id),
        "labels": {RUN_LABEL: run_id},
        # No GPU claimed: the NVIDIA runtime would otherwise expose every GPU of the machine
        "environment": {**env, "HOME": home, **({} if devices else {"NVIDIA_VISIBLE_DEVICES": "void"})},
        "user": f"{uid}:{gid}",
        "group_add": [str(g) for g in groups if g != gid],
        "working_dir": home,
        "volumes": {path: {"bind": path, "mode": "rw"} for path in [home, *mounts]},
        "network_mode": "host",
        "device_requests": gpu_device_requests(devices, gpu_request),
        **host,
    }
    if traits["mem_limit"] is not None:
        settings["mem_limit"] = traits["mem_limit"]
    if traits["cpu_limit"] is not None:
        settings.update(cpu_period=CPU_PERIOD, cpu_quota=int(traits["cpu_limit"] * CPU_PERIOD))
    return settings


def engine(host: str):
    import docker

    return docker.DockerClient(base_url=host) if host else docker.from_env()


def remove_run_container(host: str, run_id: str) -> None:
    """After the run: its container, if the foreground process could not remove it (killed)."""
    import docker

    client = engine(host)
    try:
        client.containers.get(container_name(run_id)).remove(force=True)
    except docker.errors.NotFound:
        pass
    finally:
        client.close()


def _device_requests(requests: list[dict]):
    from docker.types import DeviceRequest

    return [DeviceRequest(**request) for request in requests]


def run(spec: dict, out) -> int:
    """Create and start the container, copy its output to `out`, wait; its exit status."""
    client = engine(spec["host"])
    settings = dict(spec["container"], device_requests=_device_requests(spec["container"]["device_requests"]))
    container = client.containers.create(**settings)
    try:
        if settings["device_requests"]:
            if not devices_kept(container.attrs["HostConfig"]):
                out.write(b"gpulab: the container engine ignored the request for the run's GPUs "
                          b"(Podman 4 does through its Docker API); the run does not start without them\n")
                return 1

        def stop(signum, frame):
            threading.Thread(target=container.stop, kwargs={"timeout": STOP_SECONDS}, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        container.start()
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            out.write(chunk)
            out.flush()
        return int(container.wait().get("StatusCode", 1))
    finally:
        try:
            container.remove(force=True)
        finally:
            client.close()


def main() -> None:
    spec = json.loads(sys.stdin.buffer.read())
    if spec["container"]["labels"].get(RUN_LABEL) != sys.argv[1]:
        raise SystemExit("the settings on stdin are not the run's named on the command line")
    os.close(0)
    sys.exit(run(spec, sys.stdout.buffer))


if __name__ == "__main__":
    main()
