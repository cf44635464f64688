"""The root part of the scheduler: starting runs as their owners, behind a Unix socket.

When the hub runs as root, the scheduler service (its API, pages, store, dispatcher and the
ledger of runs' GPUs) runs as its own account. A run, though, runs as its owner's account, in
the owner's home, inside cgroup limits, and its notebooks are read with the owner's rights:
only root can do that. This helper does it and nothing else: a small process the hub starts as
root (a managed service without HTTP, `python -m gpulab.extensions.scheduler.launcher`,
started again if it dies), listening on `<data_dir>/scheduler-launcher/launcher.sock`.
Who can reach it and the protocol are every root helper's (service/root_helper.py).

What it does, each argument checked here first:
  start          {"launch": {run_id, owner, python, env, limits, image}} and the run's log file (a
                 descriptor the service opened, sent with the request): the runner, as the
                 owner, from one of the configured environments' Pythons, or (the docker
                 backend) in a container of one of their images -> {"ref": "pid:ticks"}
  wait           {"ref"}: blocks until that runner ends -> {"code": n}
  stop           {"run_id", "ref"}: that runner and what it started, if it is that run's
  cleanup        {"run_id"}: the run's leftover processes and its cgroup
  notebooks      {"owner"} -> {"notebooks": [...]}; read_notebook {"owner", "path"} -> {"notebook": {...}}
Answers: {"ok": true, ...} | {"refused": "..."} | {"failed": "..."} | {"not_found"|"invalid": "..."}.

The service runs code as its users by design (that is what a scheduler is), so what this
keeps out of its reach is root: no run as root, a service account or any account gpulab did
not make for a hub user; no program but an environment's Python or image; no signal to a
process that is not the named run's; no file read but a notebook, as its owner.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
import sys
from pathlib import Path
from typing import Sequence

from gpulab.compute.limits import Limits
from gpulab.compute.processes import ProcessRef
from gpulab.hub_config.services import root_helper
from gpulab.hub_config.services.errors import Invalid, NotFound
from gpulab.hub_config.services.root_helper import Refused, check_user

from gpulab.spawner.backends.docker.runner_container import ContainerEngine, wrapper_command
from gpulab.spawner.backends.local.runner_process import ProcessLauncher, RunnerLaunch, carries_run

from .service_settings import SchedulerServiceSettings

log = logging.getLogger("gpulab.scheduler.launcher")

HELPER_NAME = "scheduler launcher"
FOLDER = "scheduler-launcher"
SOCKET = "launcher.sock"
RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENV_BYTES = 256 << 10
OPERATIONS = {
    "start": ("launch",),
    "wait": ("ref",),
    "stop": ("run_id", "ref"),
    "cleanup": ("run_id",),
    "notebooks": ("owner",),
    "read_notebook": ("owner", "path"),
}


def socket_path(data_dir: str) -> Path:
    return Path(data_dir, FOLDER, SOCKET)


# ------------------------------------------------------------ checks (pure)


def check_run_id(value) -> str:
    if not isinstance(value, str) or not RUN_ID.match(value):
        raise Refused(f"not a run id: {value!r}")
    return value


def check_ref(value) -> ProcessRef:
    if not isinstance(value, str) or not re.match(r"^[1-9][0-9]{0,9}:([0-9]{1,20}|None)$", value):
        raise Refused(f"not a runner reference (pid:ticks): {value!r}")
    return ProcessRef.parse(value)


def check_env(value) -> dict:
    if not isinstance(value, dict):
        raise Refused("env is an object of variable name -> text")
    size = 0
    for name, text in value.items():
        if not ENV_NAME.match(name) or not isinstance(text, str) or "\0" in text:
            raise Refused(f"not an environment variable: {name!r}")
        size += len(name) + len(text)
    if size > MAX_ENV_BYTES:
        raise Refused(f"env is over {MAX_ENV_BYTES} bytes")
    return dict(value)


def check_limits(value) -> Limits:
    fields = ("cpu_limit", "cpu_guarantee", "memory_limit", "memory_guarantee")
    if not isinstance(value, dict) or set(value) != set(fields):
        raise Refused(f"limits has exactly {', '.join(fields)}")
    for name in fields:
        number = value[name]
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                                   or not 0 < number < 1 << 60):
            raise Refused(f"limits.{name}: a positive number or null, not {number!r}")
    return Limits(**value)


def check_launch(value, account_prefix: str, pythons: frozenset[str], images: frozenset[str] = frozenset()) -> RunnerLaunch:
    fields = {"run_id", "owner", "python", "env", "limits", "image"}
    if not isinstance(value, dict) or set(value) != fields:
        raise Refused(f"launch has exactly {', '.join(sorted(fields))}")
    if value["python"] not in pythons:
        raise Refused(f"python {value['python']!r} is not one of the configured environments'")
    if value["image"] != "" and value["image"] not in images:
        raise Refused(f"image {value['image']!r} is not one of the configured environments' on this backend")
    return RunnerLaunch(check_run_id(value["run_id"]), check_user(value["owner"], account_prefix), value["python"],
                        check_env(value["env"]), check_limits(value["limits"]), value["image"])


def check_log_file(fds: list[int]) -> int:
    """The one descriptor sent with `start`: a regular file open for writing."""
    if len(fds) != 1:
        raise Refused(f"start takes the run's log file as one descriptor, got {len(fds)}")
    info = os.fstat(fds[0])
    if not stat.S_ISREG(info.st_mode) or fcntl.fcntl(fds[0], fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
        raise Refused("the log descriptor is not a file open for writing")
    return fds[0]


def check_request(request, account_prefix: str, pythons: frozenset[str],
                  images: frozenset[str] = frozenset()) -> tuple[str, tuple]:
    """(operation, arguments) of a well-formed request (the log descriptor apart); raises Refused."""
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise Refused("a request is a JSON object with an \"op\"")
    op = request["op"]
    if op not in OPERATIONS:
        raise Refused(f"unknown operation {op!r}; the helper offers {', '.join(OPERATIONS)}")
    if set(request) != {"op", *OPERATIONS[op]}:
        raise Refused(f"{op} takes exactly {', '.join(OPERATIONS[op])}")
    if op == "start":
        return op, (check_launch(request["launch"], account_prefix, pythons, images),)
    if op == "wait":
        return op, (check_ref(request["ref"]),)
    if op == "stop":
        return op, (check_run_id(request["run_id"]), check_ref(request["ref"]))
    if op == "cleanup":
        return op, (check_run_id(request["run_id"]),)
    owner = check_user(request["owner"], account_prefix)
    if op == "notebooks":
        return op, (owner,)
    if not isinstance(request["path"], str):
        raise Refused("path is text")
    return op, (owner, request["path"])


# ------------------------------------------------------------ the helper (root)


class Launching:
    """Carries out checked requests with a ProcessLauncher and the owner's file reader."""

    def __init__(self, launcher: ProcessLauncher, user_files, account_prefix: str, pythons: frozenset[str],
                 images: frozenset[str] = frozenset()):
        self.launcher, self.user_files = launcher, user_files
        self.account_prefix, self.pythons, self.images = account_prefix, pythons, images

    def answer(self, request, fds: list[int]) -> dict:
        try:
            op, arguments = check_request(request, self.account_prefix, self.pythons, self.images)
            if op == "start":
                log_fd = check_log_file(fds)
            elif fds:
                raise Refused(f"{op} takes no descriptors")
            if op == "stop" and not self._is_run(*arguments):
                raise Refused(f"process {arguments[1].pid} is not a runner of run {arguments[0]}")
        except Refused as refused:
            log.warning("refused a request: %s", refused)
            return {"refused": str(refused)}
        try:
            if op == "start":
                return {"ok": True, "ref": str(self.launcher.start(arguments[0], log_fd))}
            if op == "wait":
                return {"ok": True, "code": self.launcher.wait(arguments[0])}
            if op == "notebooks":
                return {"ok": True, "notebooks": self.user_files.notebooks(*arguments)}
            if op == "read_notebook":
                return {"ok": True, "notebook": self.user_files.read(*arguments)}
            getattr(self.launcher, op)(*arguments)
            return {"ok": True}
        except NotFound as error:
            return {"not_found": error.message}
        except Invalid as error:
            return {"invalid": error.message}
        except Exception as error:  # noqa: BLE001 - said to the service, and logged here
            log.exception("%s failed", op)
            return {"failed": f"{op}: {error}"}

    @staticmethod
    def _is_run(run_id: str, ref: ProcessRef) -> bool:
        import psutil

        if not ref.running():
            return True  # gone already: stopping it does nothing
        try:
            process = psutil.Process(ref.pid)
            if process.uids().real == 0:  # only a container run's foreground process (runner_container.py)
                return process.cmdline() == wrapper_command(sys.executable, run_id)
            return carries_run(process, run_id)
        except psutil.Error:
            return True


def offered_environments(settings: SchedulerServiceSettings) -> list:
    """The catalog's environments the settings offer."""
    from gpulab.images.catalog import load_catalog
    from gpulab.spawner.environments import offered

    environments = settings.environments
    catalog = load_catalog(Path(environments.catalog) if environments.catalog else None)
    return offered(catalog, environments)


def allowed_pythons(settings: SchedulerServiceSettings) -> frozenset[str]:
    """gpulab's own Python ("") and each offered environment's."""
    return frozenset({"", *(environment.local_python for environment in offered_environments(settings))})


def allowed_images(settings: SchedulerServiceSettings) -> frozenset[str]:
    """Each offered environment's image, on the docker backend (none elsewhere)."""
    if settings.spawner.backend != "docker":
        return frozenset()
    return frozenset(environment.image for environment in offered_environments(settings))


def serve(settings: SchedulerServiceSettings) -> None:
    from .user_files import UserFiles

    local = settings.spawner.local
    launcher = ProcessLauncher(local.account_prefix, local.home_root, settings.hub.data_dir, log,
                               ContainerEngine.from_settings(settings))
    launching = Launching(launcher, UserFiles(settings), local.account_prefix, allowed_pythons(settings),
                          allowed_images(settings))
    root_helper.serve(Path(settings.socket or ""), settings.client or "", HELPER_NAME, launching.answer)


# ------------------------------------------------------------ the service's side


class LauncherError(root_helper.HelperError):
    """The launcher refused or failed a request."""


class HelperLauncher:
    """runner_process.Launcher through the helper (the service, as its own account)."""

    def __init__(self, path: Path | str, wait: float = 30.0):
        self.client = root_helper.HelperClient(path, HELPER_NAME, wait=wait, timeout=120.0)
        self.waiting = root_helper.HelperClient(path, HELPER_NAME, wait=wait, timeout=None)

    def call(self, request: dict, fds: Sequence[int] = (), client=None) -> dict:
        reply = (client or self.client).send(request, fds)
        if reply.get("not_found"):
            raise NotFound(reply["not_found"])
        if reply.get("invalid"):
            raise Invalid(reply["invalid"])
        if not reply.get("ok"):
            raise LauncherError(reply.get("refused") or reply.get("failed") or f"unexpected answer {reply!r}")
        return reply

    def start(self, launch: RunnerLaunch, log_fd: int) -> ProcessRef:
        return ProcessRef.parse(self.call({"op": "start", "launch": launch.to_json()}, [log_fd])["ref"])

    def wait(self, ref: ProcessRef) -> int:
        return self.call({"op": "wait", "ref": str(ref)}, client=self.waiting)["code"]

    def stop(self, run_id: str, ref: ProcessRef) -> None:
        self.call({"op": "stop", "run_id": run_id, "ref": str(ref)})

    def cleanup(self, run_id: str) -> None:
        self.call({"op": "cleanup", "run_id": run_id})

    # UserFiles' methods, read as the owner by the helper
    def notebooks(self, owner: str) -> list[str]:
        return self.call({"op": "notebooks", "owner": owner})["notebooks"]

    def read(self, owner: str, path: str) -> dict:
        return self.call({"op": "read_notebook", "owner": owner, "path": path})["notebook"]


def main() -> None:
    from gpulab.hub_config.services.lifetime import end_with_hub
    from gpulab.hub_config.services.runner import configure_logging, service_settings

    end_with_hub()
    settings = SchedulerServiceSettings.of(service_settings())
    configure_logging("scheduler-launcher", settings.hub.log_level)
    serve(settings)


if __name__ == "__main__":
    main()
