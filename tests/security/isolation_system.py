"""The matrix's system cells: homes, the project folder, kernel connection files, `/proc` of
alice's and the services' processes and the hub's data files, tried from bob's and mallory's
system accounts (fresh processes with their uid and groups, as their notebooks run).

The control is the owner: alice's account for her things, and for a process or a data file
whatever account owns it (root today; a service's own account once it has one).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import sys
from pathlib import Path

import psutil

from tests.security.isolation_probes import Cell, as_account, as_uid, granted, http, lists, reads, uid_of, writes
from tests.security.isolation_world import PLAN_FILE, SECRET_FILE, World

OWNER = "owner"  # the control of a /proc or data-file cell: whoever owns the process or file
SERVICES = ("scheduler", "ssh", "projects", "mlflow")
PROCESSES = ("alice-server", "alice-kernel", "alice-terminal", "alice-tensorboard", "hub", "proxy", *SERVICES)
PROC_ITEMS = ("environ", "fd", "mem")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)


# ---------------------------------------------------------------- homes and the project folder


def via_own_server(method: str):
    """`who` links alice's home into their own and asks their own server's contents API for it:
    the Jupyter server follows the link, so only the file system's permissions stand between."""
    def probe(world: World, who: str) -> bool:
        link = world.home(who) / "alice-home"
        as_account(world, who, "ln", "-sfn", str(world.home("alice")), str(link))
        assert link.is_symlink(), f"{who} could not make the link in their own home"
        if method == "GET":
            url = world.hub.url + f"user/{who}/api/contents/alice-home/{SECRET_FILE}"
            return granted(http(world, who, "GET", url), world.secret)
        name = f"written-by-{who}-{secrets.token_hex(3)}.txt"
        response = http(world, who, "PUT", world.hub.url + f"user/{who}/api/contents/alice-home/{name}",
                        json={"type": "file", "format": "text", "content": "x"})
        return granted(response) and (world.home("alice") / name).exists()
    return probe


# Asks TensorBoard over its Unix socket for its runs; prints the status line.
UNIX_GET = """
import socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
    client.connect(sys.argv[1])
    client.sendall(f"GET {sys.argv[2]}data/runs HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n".encode())
    print(client.recv(100).split(b"\\r\\n")[0].decode())
"""


def tensorboard_answers(world: World, who: str) -> bool:
    """`who` reaches alice's TensorBoard around her server, on its socket."""
    result = as_account(world, who, sys.executable, "-c", UNIX_GET, str(world.tensorboard_socket), world.tensorboard)
    return result.returncode == 0 and b" 200 " in result.stdout


HOMES = {
    "home-list": lambda w, who: lists(w, who, str(w.home("alice")), SECRET_FILE),
    "home-read": lambda w, who: reads(w, who, str(w.home("alice") / SECRET_FILE), w.secret),
    "home-write": lambda w, who: writes(w, who, str(w.home("alice"))),
    "kernel-connection-file": lambda w, who: reads(w, who, str(w.connection_file), '"key"'),
    "tensorboard-socket": tensorboard_answers,
}
THROUGH_OWN_SERVER = {"contents-read-via-link": via_own_server("GET"), "contents-write-via-link": via_own_server("PUT")}
PROJECT_FOLDER = {
    "folder-list": lambda w, who: lists(w, who, str(w.project_folder), PLAN_FILE),
    "folder-read": lambda w, who: reads(w, who, str(w.project_folder / PLAN_FILE), w.secret),
    "folder-write": lambda w, who: writes(w, who, str(w.project_folder)),
}

# ---------------------------------------------------------------- /proc


def find_process(world: World, target: str) -> psutil.Process:
    """The hub's process, or one it started: the proxy, a service, alice's server or kernel."""
    hub = psutil.Process(world.hub.process.pid)
    if target == "hub":
        return hub
    users = {entry.pw_name for entry in world.accounts.values()}
    alice = world.accounts["alice"].pw_name
    for process in hub.children(recursive=True):
        line = " ".join(process.cmdline())
        owner = process.username()
        if target == "proxy" and (process.name() == "traefik" or "configurable-http-proxy" in line):
            return process
        if target == "alice-server" and owner == alice and "jupyterhub-singleuser" in line:
            return process
        if target == "alice-kernel" and owner == alice and world.kernel_id in line:
            return process
        if target == "alice-terminal" and owner == alice and process.terminal():
            return process
        if target == "alice-tensorboard" and owner == alice and "gpulab.extensions.tensorboard.serve" in line:
            return process
        if target in SERVICES and owner not in users and re.search(rf"-m gpulab\.extensions\.{target}\b", line):
            return process
    raise LookupError(f"no {target} process under the hub {hub.pid}")


def process_uid(world: World, target: str, who: str) -> tuple[psutil.Process, int]:
    process = find_process(world, target)
    return process, process.uids().real if who == OWNER else uid_of(world, who)


def readable_address(pid: int) -> int:
    """The start of the process's first readable mapping (read as root)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span, permissions = line.split()[:2]
        if permissions.startswith("r"):
            return int(span.split("-")[0], 16)
    raise LookupError(f"process {pid} maps nothing readable")


def proc_readable(process: psutil.Process, uid: int, item: str) -> bool:
    """Whether account `uid` reads /proc/<pid>/environ, lists its fd or reads its memory."""
    path = f"/proc/{process.pid}/{item}"
    if item == "mem":
        code = f"f = open({path!r}, 'rb'); f.seek({readable_address(process.pid)}); assert len(f.read(16)) == 16"
        return as_uid(uid, sys.executable, "-c", code).returncode == 0
    result = as_uid(uid, "ls", path) if item == "fd" else as_uid(uid, "cat", path)
    return result.returncode == 0 and bool(result.stdout.strip())


def proc_probe(target: str, item: str):
    def probe(world: World, who: str) -> bool:
        return proc_readable(*process_uid(world, target, who), item)
    return probe


def secrets_of(world: World, process: psutil.Process) -> set[str]:
    """What must never show in a command line: every user's token and the process's own secrets."""
    found = set(world.tokens.values())
    found |= {value for name, value in process.environ().items() if SECRET_NAME.search(name) and len(value) >= 8}
    return found


# ---------------------------------------------------------------- the hub's data files


def run_output(world: World) -> str:
    folders = [p for p in (world.hub.data_dir / "scheduler").rglob(world.run["id"]) if p.is_dir()]
    if not folders:
        raise LookupError(f"no folder of run {world.run['id']} under {world.hub.data_dir / 'scheduler'}")
    return str(folders[0].relative_to(world.hub.data_dir) / "output.ipynb")


def mlflow_artifact(world: World) -> str:
    location = world.mlflow_run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/").strip("/")
    return f"mlflow/artifacts/{location}/output.ipynb"


DATA_FILES = {
    "cookie-secret": "jupyterhub_cookie_secret",
    "hub-db": "jupyterhub.sqlite",
    "gpulab-db": "state/gpulab.sqlite",
    "mlflow-db": "mlflow/mlflow.sqlite",
    "mlflow-auth-db": "mlflow/auth.sqlite",
    "mlflow-auth-config": "mlflow/auth.ini",
    "mlflow-session-secret": "mlflow/session-secret",
    "ssh-host-key": "ssh/ssh_host_ed25519_key",
    "ssh-endpoint-secret": "ssh/endpoint-master-secret",
    "proxy-config": "proxy/traefik.toml",
    "proxy-routes": "proxy/rules.toml",
    "hub-log": "logs/hub.log",
    "alice-server-log": lambda w: f"logs/servers/{w.accounts['alice'].pw_name}.log",
    "alice-run-output": run_output,
    "alice-mlflow-artifact": mlflow_artifact,
}


def data_probe(relative):
    def probe(world: World, who: str) -> bool:
        path = world.hub.data_dir / (relative(world) if callable(relative) else relative)
        uid = path.stat().st_uid if who == OWNER else uid_of(world, who)
        result = as_uid(uid, "cat", str(path))
        return result.returncode == 0 and bool(result.stdout)
    return probe


def data_dir_listed(world: World, who: str) -> bool:
    uid = world.hub.data_dir.stat().st_uid if who == OWNER else uid_of(world, who)
    result = as_uid(uid, "ls", "-a", str(world.hub.data_dir))
    return result.returncode == 0 and b"jupyterhub_cookie_secret" in result.stdout


# Run as an account: which of the paths on stdin it can read (a file) or list (a folder).
READABLE = """
import os, sys
for path in sys.stdin.read().splitlines():
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        print(path)
    except OSError:
        pass
"""


def readable_files(uid: int, paths: list[str]) -> list[str]:
    """Those of `paths` account `uid` can read or list (one process for them all)."""
    result = as_uid(uid, sys.executable, "-c", READABLE, stdin="\n".join(paths).encode())
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().splitlines()


def owned_under(roots: list[str], uid: int, skip: tuple[str, ...] = ()) -> list[str]:
    """Regular files and folders below `roots` that belong to `uid` (as root sees them)."""
    found = []
    for root in roots:
        for folder, folders, names in os.walk(root):
            folders[:] = [name for name in folders if not os.path.join(folder, name).startswith(skip)]
            for path in [os.path.join(folder, name) for name in folders + names]:
                with contextlib.suppress(FileNotFoundError):
                    info = os.lstat(path)
                    if info.st_uid == uid and (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                        found.append(path)
    return found


def system_cells() -> list[Cell]:
    accounts = ("bob", "mallory")
    return [
        *(Cell(f"homes/{name}", probe, accounts) for name, probe in HOMES.items()),
        *(Cell(f"homes/{name}", probe, ("bob",)) for name, probe in THROUGH_OWN_SERVER.items()),
        *(Cell(f"project-folder/{name}", probe, ("mallory",)) for name, probe in PROJECT_FOLDER.items()),
        *(Cell(f"proc/{target}/{item}", proc_probe(target, item), accounts, owner=OWNER)
          for target in PROCESSES for item in PROC_ITEMS),
        Cell("data/data-dir-list", data_dir_listed, accounts, owner=OWNER),
        *(Cell(f"data/{name}", data_probe(path), accounts, owner=OWNER) for name, path in DATA_FILES.items()),
    ]


def hub_workdir_passable(world: World, who: str) -> bool:
    """Whether `who` can list the folder holding the data directory, so a refusal below it is
    the data directory's own doing (pytest's temporary folders are private to root)."""
    return lists(world, who, str(world.hub.workdir), ".gpulab")
