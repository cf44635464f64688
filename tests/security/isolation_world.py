"""The world the isolation matrix is replayed in: one real hub with alice's things in it.

alice leads project "vision" (bob is an editor, mallory is in nothing) and has, all made
through the real APIs: a running server with a file in her home, a kernel and a terminal, a
schedule and a finished run (which is also an MLflow run with an artifact), and an SSH key.
bob's server runs too, so his account is the one his notebooks would really run as.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import requests

from gpulab.hub_config.client import HubClient
from gpulab.spawner.accounts import account_name, ensure_account
from tests.support.hub import RunningHub, wait_for
from tests.support.projects import create_project
from tests.support.ssh import make_key

USERS = ("alice", "bob", "mallory")
SECRET_FILE = "secret.txt"
PLAN_FILE = "plan.md"  # in the project's folder


@dataclass
class World:
    hub: RunningHub
    tokens: dict[str, str]  # each user's full API token
    accounts: dict[str, pwd.struct_passwd]
    targets: dict[str, str]  # proxy route -> where it goes (alice's server, each service)
    secret: str  # what alice's ~/secret.txt holds
    kernel_id: str
    connection_file: Path
    terminal: str
    schedule: dict
    run: dict
    mlflow_run: dict  # MLflow's run info of alice's scheduled run
    keys: dict[str, Path]  # private keys of alice and bob, both registered
    alice_key: dict  # the SSH API's model of alice's key
    project_folder: Path
    key_folder: Path
    tensorboard: str  # the URL path alice's TensorBoard is served at, e.g. /user/alice/tensorboard/<key>/
    tensorboard_socket: Path

    def client(self, who: str) -> HubClient:
        return HubClient(self.hub.url, self.tokens[who])

    def home(self, who: str) -> Path:
        return Path(self.accounts[who].pw_dir)

    @property
    def alice_server(self) -> str:
        """alice's server's own local address, around the proxy."""
        return self.targets["/user/alice/"] + "/"

    def service(self, name: str) -> str:
        return self.targets[f"/services/{name}/"] + "/"

    def spare_key(self) -> str:
        """A fresh public key nobody registered yet."""
        return make_key(self.key_folder, f"spare-{secrets.token_hex(3)}").with_suffix(".pub").read_text()


def notebook(*cells: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


def finished_run(alice: HubClient) -> tuple[dict, dict]:
    """A schedule that has not fired yet, and a completed run of a one-off notebook."""
    schedule = alice.request("POST", "services/scheduler/api/schedules",
                             {"name": "nightly-secret", "notebook": notebook("print(1)"), "cron": "0 3 * * *"})
    run = alice.request("POST", "services/scheduler/api/runs",
                        {"name": "secret-run", "notebook": notebook("print('run-output-of-alice')")})
    path = f"services/scheduler/api/runs/{run['id']}"
    done = wait_for(lambda: (r := alice.request("GET", path))["status"] not in ("QUEUED", "RUNNING") and r,
                    180, "alice's run to end")
    assert done["status"] == "COMPLETED" and done["mlflow_run_id"], done
    return schedule, done


def kernel_connection_file(account: str, kernel_id: str) -> Path:
    """The connection file (ports and HMAC key) the kernel was started with, from its command line."""
    def find():
        for process in psutil.process_iter(["username", "cmdline"]):
            line = process.info["cmdline"] or []
            if process.info["username"] == account and any(kernel_id in part for part in line):
                return Path(line[line.index("-f") + 1])
        return None

    return wait_for(find, 30, f"the kernel {kernel_id}'s process")


def open_tensorboard(hub: RunningHub, token: str, account: str) -> tuple[str, Path]:
    """alice opens TensorBoard on her default log folder: its URL path and its Unix socket."""
    opened = requests.get(hub.url + "user/alice/tensorboard/open", headers={"Authorization": f"token {token}"},
                          timeout=120)
    assert opened.status_code == 200, opened.text[-500:]
    path = re.match(r"^https?://[^/]+(/.*/tensorboard/[0-9a-f]+/)", opened.url).group(1)

    def find():
        for process in psutil.process_iter(["username", "cmdline"]):
            line = process.info["cmdline"] or []
            if process.info["username"] == account and "gpulab.extensions.tensorboard.serve" in line:
                return Path(line[line.index("--socket") + 1])
        return None

    return path, wait_for(find, 30, "alice's TensorBoard process")


def build_world(hub: RunningHub, key_folder: Path) -> World:
    prefix = hub.settings["spawner"]["local"]["account_prefix"]
    for name in (*USERS, "carol"):  # carol: someone alice may add to her project
        hub.create_user(name)
    tokens = {name: hub.user_token(name) for name in USERS}
    alice = HubClient(hub.url, tokens["alice"])
    create_project(hub, "alice", "vision", {"bob": "editor"})
    hub.spawn("alice")
    hub.spawn("bob")
    # mallory never starts a server; her account is the one the spawner would give her
    home_root = Path(hub.settings["spawner"]["local"]["home_root"])
    asyncio.run(ensure_account(account_name("mallory", prefix), home_root))
    accounts = {name: pwd.getpwnam(account_name(name, prefix)) for name in USERS}

    secret = f"alice-secret-{secrets.token_hex(8)}"
    for path in (SECRET_FILE, f"projects/vision/{PLAN_FILE}"):
        alice.request("PUT", f"user/alice/api/contents/{path}", {"type": "file", "format": "text", "content": secret})
    kernel_id = alice.request("POST", "user/alice/api/kernels", {"name": "python3"})["id"]
    terminal = alice.request("POST", "user/alice/api/terminals")["name"]
    schedule, run = finished_run(alice)
    mlflow_run = alice.request("GET", f"services/mlflow/api/2.0/mlflow/runs/get?run_id={run['mlflow_run_id']}")

    keys = {name: make_key(key_folder, name) for name in ("alice", "bob")}
    registered = {name: HubClient(hub.url, tokens[name]).request(
        "POST", "services/ssh/api/keys", {"public_key": keys[name].with_suffix(".pub").read_text()})
        for name in keys}
    tensorboard, tensorboard_socket = open_tensorboard(hub, tokens["alice"], accounts["alice"].pw_name)
    targets = {route: spec["target"] for route, spec in hub.api.request("GET", "hub/api/proxy").items()}
    return World(
        hub=hub, tokens=tokens, accounts=accounts, targets=targets, secret=secret, kernel_id=kernel_id,
        connection_file=kernel_connection_file(accounts["alice"].pw_name, kernel_id), terminal=terminal,
        schedule=schedule, run=run, mlflow_run=mlflow_run["run"], keys=keys, alice_key=registered["alice"],
        project_folder=Path(hub.settings["projects"]["local"]["root"], "vision", "files"), key_folder=key_folder,
        tensorboard=tensorboard, tensorboard_socket=tensorboard_socket,
    )
