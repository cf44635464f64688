"""A real gpulab hub for tests: `gpulab up` as a subprocess on random ports with a temp data dir.

Readiness is always polled (the hub API, a server's `ready` flag), never slept for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml import YAML

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.hub_config.settings import deep_merge

from .ports import free_port_block

ADMIN_TOKEN = "gpulab-test-admin-token-7f3c9a1e5b"
# The escape hatch (jupyterhub_config.d) gives tests an admin API token.
ADMIN_TOKEN_CONFIG = f"""
c.JupyterHub.services.append({{"name": "test-admin", "api_token": "{ADMIN_TOKEN}"}})
c.JupyterHub.load_roles.append({{
    "name": "test-admin",
    "scopes": ["admin:users", "admin:servers", "admin-ui", "read:hub", "access:servers", "access:services",
               "tokens", "admin:groups", "groups", "shares", "list:services", "read:services", "proxy",
               "read:metrics"],
    "services": ["test-admin"],
}})
"""
PORT_BLOCK = 13  # public, proxy API, hub, the hub's services at hub+1..hub+9, the SSH gateway
GPULAB = str(Path(sys.executable).parent / "gpulab")


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class RunningHub:
    workdir: Path
    settings: dict
    url: str
    ports: dict
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    extra_env: dict = field(default_factory=dict)
    launcher: list[str] = field(default_factory=list)  # e.g. setpriv ... to run the hub as another user

    @property
    def api(self) -> HubClient:
        return HubClient(self.url, ADMIN_TOKEN)

    @property
    def data_dir(self) -> Path:
        return self.workdir / ".gpulab"

    @property
    def settings_file(self) -> Path:
        return self.workdir / "gpulab.yaml"

    # ------------------------------------------------------------ process

    def start(self, timeout: float = 90) -> "RunningHub":
        """Start the hub and wait until JupyterHub says it is running (start-up complete)."""
        self.log_path = self.workdir / f"hub-{int(time.time() * 1000)}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*self.launcher, GPULAB, "up", "--config", str(self.settings_file)],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        wait_for(self._answers, timeout, f"the hub at {self.url} (log: {self.log_path})")
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the hub exited with {self.process.returncode}:\n{self.log_tail()}")
        logs_info = self.settings.get("hub", {}).get("log_level", "INFO") in ("DEBUG", "INFO")
        if logs_info and "JupyterHub is now running" not in self.log_path.read_text(errors="replace"):
            return False
        try:
            self.api.request("GET", "hub/api/")
            return True
        except ClientError:
            return False

    def stop(self, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)

    def restart(self) -> "RunningHub":
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------ users and servers

    def create_user(self, name: str, admin: bool = False) -> dict:
        try:
            return self.api.request("POST", f"hub/api/users/{name}", {"admin": admin})
        except ClientError as exc:
            if exc.status != 409:
                raise
            return self.api.request("GET", f"hub/api/users/{name}")

    def user_token(self, name: str, scopes: list[str] | None = None) -> str:
        body = {"note": "test", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        return self.api.request("POST", f"hub/api/users/{name}/tokens", body)["token"]

    def server_model(self, name: str, server: str = "") -> dict | None:
        return self.api.request("GET", f"hub/api/users/{name}")["servers"].get(server)

    def spawn(self, name: str, server: str = "", options: dict | None = None, timeout: float = 90) -> dict:
        """Start a server and wait until it is ready; raise with the hub's log if it fails."""
        path = f"hub/api/users/{name}/servers/{server}" if server else f"hub/api/users/{name}/server"
        try:
            self.api.request("POST", path, options or {})
        except ClientError as error:
            if error.status >= 500 and error.message == "Internal Server Error":
                # an unhandled error: its traceback is in the hub's log, not in the answer
                raise ClientError(error.status, f"{error.message}; the hub's log ends:\n{self.log_tail(120)}") from None
            raise

        def ready():
            model = self.server_model(name, server)
            if model is None:
                raise RuntimeError(f"the server of {name} stopped while starting:\n{self.log_tail()}")
            return model if model["ready"] else None

        return wait_for(ready, timeout, f"{name}'s server {server!r} to be ready")

    def stop_server(self, name: str, server: str = "", timeout: float = 60) -> None:
        path = f"hub/api/users/{name}/servers/{server}" if server else f"hub/api/users/{name}/server"
        try:
            self.api.request("DELETE", path)
        except ClientError as exc:
            if exc.status not in (400, 404):
                raise
        wait_for(lambda: self.server_model(name, server) is None, timeout, f"{name}'s server to stop")

    def stop_all_servers(self) -> None:
        for user in self.api.request("GET", "hub/api/users"):
            for server in list(user.get("servers", {})):
                self.stop_server(user["name"], server)


def services_of(hub_pid: int) -> list:
    """The live processes of the services the hub `hub_pid` started (GPULAB_HUB_PID)."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("GPULAB_HUB_PID") == str(hub_pid) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


def managed_service_process(hub: "RunningHub", module: str):
    """The live process the hub started for the service running `module`, or None."""
    import psutil

    for process in services_of(hub.process.pid):
        try:
            if process.ppid() == hub.process.pid and module in " ".join(process.cmdline()):
                return process
        except psutil.Error:
            pass
    return None


def process_uids(pid: int) -> list[str]:
    """Real, effective, saved and file-system uid of `pid`, from /proc/<pid>/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))


def service_runs_as(hub: "RunningHub", module: str, uid: int):
    """The hub's process for `module`, once it runs, checked to run as `uid` (all four uids)."""
    process = wait_for(lambda: managed_service_process(hub, module), 60, f"the {module} process\n{hub.log_tail()}")
    assert process_uids(process.pid) == [str(uid)] * 4  # real, effective, saved, file system
    return process


def run_as_account(entry, *command: str, text: bool = True) -> subprocess.CompletedProcess:
    """`command` as the account `entry` (a pwd entry) with only its own group."""
    return subprocess.run(list(command), user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], capture_output=True,
                          text=text)


def can_read_as(entry, path: Path) -> bool:
    """Whether the account `entry` can read `path` (`cat` as that account)."""
    return run_as_account(entry, "cat", str(path), text=False).returncode == 0


def write_settings(path: Path, settings: dict) -> None:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    with open(path, "w") as out:
        yaml.dump(settings, out)


def prepare_hub(workdir: Path, settings: dict | None = None, defaults: dict | None = None,
                extra_env: dict | None = None) -> RunningHub:
    """A hub ready to start in `workdir`, on a fresh block of ports."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = free_port_block(PORT_BLOCK)
    ports = {"public": base, "proxy_api": base + 1, "hub": base + 2, "ssh": base + 12}
    generated = {
        "hub": {"ip": "127.0.0.1", "port": ports["public"], "internal_port": ports["hub"], "log_level": "DEBUG"},
        "proxy": {"api_port": ports["proxy_api"]},
        "ssh": {"port": ports["ssh"]},
    }
    merged = deep_merge(deep_merge(generated, defaults or {}), settings or {})
    hub = RunningHub(workdir, merged, f"http://127.0.0.1:{ports['public']}/", ports, extra_env=extra_env or {})
    write_settings(hub.settings_file, merged)
    config_d = workdir / "jupyterhub_config.d"
    config_d.mkdir(exist_ok=True)
    (config_d / "00-test-admin.py").write_text(ADMIN_TOKEN_CONFIG)
    return hub


class HubFactory:
    """Starts hubs and cleans up after them: their servers, the hubs, in that order."""

    def __init__(self, root: Path, defaults: dict):
        self.root = root
        self.defaults = defaults
        self.hubs: list[RunningHub] = []

    def prepare(self, settings: dict | None = None, name: str = "hub", extra_env: dict | None = None) -> RunningHub:
        workdir = self.root / f"{name}-{len(self.hubs)}"
        hub = prepare_hub(workdir, settings, self.defaults, extra_env)
        self.hubs.append(hub)
        return hub

    def start(self, settings: dict | None = None, name: str = "hub", extra_env: dict | None = None) -> RunningHub:
        return self.prepare(settings, name, extra_env).start()

    def cleanup(self) -> None:
        for hub in self.hubs:
            if hub.process is not None and hub.process.poll() is None:
                try:
                    hub.stop_all_servers()
                except Exception as exc:  # the hub may be broken on purpose; still stop it
                    print(f"could not stop servers of {hub.url}: {exc}")
                hub.stop()
        self.hubs.clear()
