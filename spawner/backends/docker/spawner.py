"""The container backend on one machine: each server is a container from its environment's image.

DockerSpawner (the maintained JupyterHub spawner) creates, starts, polls and removes the
containers, through Docker Engine or Podman's Docker API. gpulab's part is what goes into each
container, built by one pure function, `container_settings`, from the spawn's plan:

- the environment's image from images/catalog.yaml;
- the GPUs claimed from the same ledger as the local backend, as device requests naming exactly
  those devices (`--gpus device=UUID`, or CDI names), none for a CPU profile;
- the profile's CPU and memory limits and guarantees;
- the user's system account (the same one the local backend runs processes as): the container
  runs as its uid, gid and groups, with its home bind-mounted at the same path, so files made in
  the container belong to the user on the host, whatever UID the image's own user has (1000);
  the groups are read when the container is made, after the pre-spawn hooks, so the projects
  extension's hook (extensions/projects/spawn_hook.py) gives it the project groups, and its
  `add_mount` bind-mounts the projects root at the same path (access stays the account's);
- the host's network, so the server reaches the hub, MLflow and the other services at the same
  local addresses as a process server, and the hub reaches the server on 127.0.0.1.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from dockerspawner import DockerSpawner
from traitlets import Enum, Integer, List, Unicode, default

from gpulab.compute.containers import GPU_REQUESTS, devices_kept, gpu_device_requests, limit_settings
from gpulab.compute.limits import Limits
from gpulab.compute.processes import start_ticks

from gpulab.spawner.accounts import AccountError, account_name, ensure_account, home_of
from gpulab.spawner.errors import SpawnError
from gpulab.spawner.profile_spawner import ProfileSpawnerMixin
from gpulab.spawner.progress import ProgressMixin
from gpulab.spawner.server_ports import server_port

def container_settings(*, image: str, limits: Limits, devices: list[str], gpu_request: str,
                       uid: int, gid: int, groups: list[int], home: str, mounts: list[str]) -> dict:
    """The DockerSpawner trait values of one spawn (pure): what a DockerSpawner configured by
    hand with these values would create. Host paths are mounted at the same path inside."""
    traits, host = limit_settings(limits)
    volumes = {path: {"bind": path, "mode": "rw"} for path in [home, *mounts]}
    host.update(network_mode="host", group_add=[str(g) for g in groups if g != gid],
                device_requests=gpu_device_requests(devices, gpu_request))
    return {
        "image": image,
        **traits,
        "volumes": volumes,
        "extra_create_kwargs": {"user": f"{uid}:{gid}", "working_dir": home},
        "extra_host_config": host,
    }


class ContainerSpawner(ProgressMixin, DockerSpawner):
    """DockerSpawner on this machine's engine, as the user's system account, on the host's network.
    What runs (image, limits, GPUs) comes from the hooks below, which GpulabDockerSpawner fills from
    the spawn's plan; every spawn sets them again, so nothing of one spawn reaches the next."""

    account_prefix = Unicode(
        "gpulab-",
        help="""Prefix of each hub user's system account, as for the local backend (set by apply_config
        from spawner.local.account_prefix). Default "gpulab-".""",
    ).tag(config=True)

    home_root = Unicode(
        "",
        help="""Folder holding the users' homes, as for the local backend. Default "": /home as root,
        <data_dir>/homes otherwise.""",
    ).tag(config=True)

    data_dir = Unicode("", help='gpulab\'s data directory. Default "" (the working directory).').tag(config=True)

    gpu_request = Enum(
        GPU_REQUESTS, "nvidia",
        help="""How claimed GPUs are passed to a container: "nvidia" (default; `--gpus device=UUID`, the
        NVIDIA container toolkit) or "cdi" (CDI names nvidia.com/gpu=UUID).""",
    ).tag(config=True)

    mounts = List(
        Unicode(),
        help="""Host folders every server gets, mounted at the same path (e.g. shared data; access is still
        the user's account's; project members get the projects root without it). Default []. Example
        ["/data/shared"].""",
    ).tag(config=True)

    container_pid = Integer(0, help="Host pid of the container's first process (tini), once started.")

    added_mounts = List(
        Unicode(),
        help="Host folders the next start mounts besides `mounts` (pre-spawn hooks add them; the start uses them up).",
    )

    @default("network_name")
    def _network_name_default(self):
        return "host"

    @default("use_internal_ip")
    def _use_internal_ip_default(self):
        return True  # no port publishing on the host's network; get_ip_and_port says where

    @default("remove")
    def _remove_default(self):
        return True  # what a user keeps is in their home; a stopped container holds nothing

    # -------------------------------------------------------------- hooks for what runs

    def server_image(self) -> str:
        return self.image

    def resource_limits(self) -> Limits:
        return Limits()

    def gpu_uuids(self) -> list[str]:
        return []

    # -------------------------------------------------------------- who the container runs as

    @property
    def isolated(self) -> bool:
        return os.geteuid() == 0

    @property
    def account(self) -> str:
        return account_name(self.user.name, self.account_prefix) if self.isolated else pwd.getpwuid(os.getuid()).pw_name

    @property
    def home(self) -> Path:
        if self.isolated:
            return home_of(self.account, Path(self.home_root or "/home"))
        return Path(self.home_root or Path(self.data_dir or ".", "homes")) / account_name(self.user.name, "")

    async def _identity(self) -> tuple[int, int, list[int]]:
        if self.isolated:
            entry = await ensure_account(self.account, Path(self.home_root or "/home"))
        else:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            entry = pwd.getpwuid(os.getuid())
        return entry.pw_uid, entry.pw_gid, os.getgrouplist(entry.pw_name, entry.pw_gid)

    def add_mount(self, path: str) -> None:
        """Mount host folder `path` at the same path in the container the next start makes."""
        if path not in self.added_mounts:
            self.added_mounts = [*self.added_mounts, path]

    def template_namespace(self):
        # The account is unique per hub user and prefix: two hubs on one engine never share a name.
        return {**super().template_namespace(), "username": self.account}

    # -------------------------------------------------------------- the spawn

    async def start(self):
        self.emit_progress(10, "Preparing your account")
        try:
            uid, gid, groups = await self._identity()
        except AccountError as error:
            raise SpawnError(f"Cannot start a server for {self.user.name}: {error}") from None
        configured = self._configured_values()
        # The groups and mounts are those of now, after the pre-spawn hooks (the projects' ones).
        mounts, self.added_mounts = [*self.mounts, *self.added_mounts], []
        settings = container_settings(image=self.server_image(), limits=self.resource_limits(),
                                      devices=self.gpu_uuids(), gpu_request=self.gpu_request, uid=uid, gid=gid,
                                      groups=groups, home=str(self.home), mounts=mounts)
        settings["extra_host_config"] = {**configured["extra_host_config"], **settings["extra_host_config"]}
        settings["extra_create_kwargs"] = {**configured["extra_create_kwargs"], **settings["extra_create_kwargs"]}
        for name, value in settings.items():
            setattr(self, name, value)
        # The host's network: the server listens on a free local port, as a process server does.
        self.ip, self.port = "127.0.0.1", server_port()
        self.emit_progress(40, f"Starting a container from {self.image}")
        result = await super().start()
        self.container_pid = (await self.docker("inspect_container", self.container_id))["State"]["Pid"] or 0
        self.emit_progress(70, "Waiting for JupyterLab to answer")
        return result

    async def create_object(self):
        created = await super().create_object()
        if self.gpu_uuids():
            await self._check_devices_kept(created["Id"])
        return created

    async def _check_devices_kept(self, container_id: str) -> None:
        """An engine may drop device requests without a word (Podman 4 through the Docker API
        does): a GPU server without its GPUs fails here instead of starting blind."""
        if not devices_kept((await self.docker("inspect_container", container_id))["HostConfig"]):
            await self.docker("remove_container", container_id, force=True)
            raise SpawnError(f"The container engine ignored the request for GPUs {', '.join(self.gpu_uuids())}. "
                             "Use Docker Engine with the NVIDIA container toolkit (gpu_request: nvidia) or an engine "
                             "that honours CDI device requests (gpu_request: cdi); Podman 4 does not through its "
                             "Docker API.")

    def _configured_values(self) -> dict:
        """What the operator configured, kept before the first spawn changes it."""
        if not hasattr(self, "_configured"):
            self._configured = {"extra_host_config": dict(self.extra_host_config or {}),
                                "extra_create_kwargs": dict(self.extra_create_kwargs or {})}
        return self._configured

    async def get_ip_and_port(self):
        return self.ip, self.port

    def get_env(self):
        env = super().get_env()
        env["HOME"] = str(self.home)
        env["USER"] = self.account
        if not self.gpu_uuids():
            env["NVIDIA_VISIBLE_DEVICES"] = "void"  # the NVIDIA runtime would otherwise expose every GPU
        return env

    # -------------------------------------------------------------- state

    def get_state(self):
        state = super().get_state()
        if self.object_id:
            state.update(port=self.port, container_pid=self.container_pid)
        return state

    def load_state(self, state):
        super().load_state(state)
        self.port = state.get("port", self.port)
        self.container_pid = state.get("container_pid", 0)
        if state.get("port"):
            self.ip = "127.0.0.1"

    def clear_state(self):
        super().clear_state()
        self.container_pid = 0


class GpulabDockerSpawner(ProfileSpawnerMixin, ContainerSpawner):
    """Profiles in containers on this machine: the ledger allocates GPUs, the engine enforces limits."""

    def server_image(self) -> str:
        plan = self.spawn_plan
        return plan.environment.image if plan is not None else self.image

    def resource_limits(self) -> Limits:
        plan = self.spawn_plan
        return plan.limits if plan is not None else Limits()

    def gpu_uuids(self) -> list[str]:
        return list(self.devices)

    def holder_started(self) -> None:
        # The claim lives as long as the container's first process, even if the hub is down.
        if self.claim_id and self.ledger is not None and self.container_pid:
            self.ledger.attach(self.claim_id, self.container_pid, start_ticks(self.container_pid))


def engine_problem(host: str, timeout: float = 5) -> str | None:
    """Why the docker backend has no engine to talk to at `host` ("" = DOCKER_HOST or Docker's
    default socket), with how to get one; None when it answers."""
    import docker
    from docker.utils import kwargs_from_env

    kwargs = {**kwargs_from_env(), **({"base_url": host} if host else {})}
    where = kwargs.get("base_url") or "unix:///var/run/docker.sock"
    try:
        client = docker.APIClient(timeout=timeout, **kwargs)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:  # no socket, no permission, no daemon
        return (f"spawner.backend is docker, but no container engine answers at {where} ({type(error).__name__}). "
                "Install Docker Engine (https://docs.docker.com/engine/install/; for GPUs also the NVIDIA container "
                "toolkit), or Podman (`apt-get install podman`, then `systemctl enable --now podman.socket` and "
                "spawner.docker.host: unix:///run/podman/podman.sock)")
    return None
