"""The matrix's web cells: alice's server, the hub API and each service's API and pages, asked
through the proxy and (where a port listens on 127.0.0.1) around it, with bob's or mallory's
token or none. The control in every cell is alice's own token.
"""

from __future__ import annotations

import json
import secrets

from tests.security.isolation_probes import ANONYMOUS, Cell, granted, http, websocket_opens
from tests.security.isolation_world import World, notebook

ROUTES = ("proxy", "direct")


def base(world: World, route: str, service: str | None = None) -> str:
    """Where alice's server (or a service) is asked: the public proxy, or its own local port."""
    if route == "proxy":
        return world.hub.url
    return world.service(service) if service else world.alice_server


# ---------------------------------------------------------------- alice's server


def server_get(path, marker=None):
    def probe(world: World, who: str, route: str) -> bool:
        found = marker(world) if callable(marker) else marker
        where = path(world) if callable(path) else path
        return granted(http(world, who, "GET", base(world, route) + f"user/alice/{where}"), found)
    return probe


def server_write(world: World, who: str, route: str) -> bool:
    name = f"written-by-{who}-{secrets.token_hex(3)}.txt"
    response = http(world, who, "PUT", base(world, route) + f"user/alice/api/contents/{name}",
                    json={"type": "file", "format": "text", "content": "x"})
    made = (world.home("alice") / name).exists()
    return granted(response) and made


def server_starts(kind: str):
    """POST a kernel or a terminal; one that did start is shut down again with alice's token."""
    def probe(world: World, who: str, route: str) -> bool:
        response = http(world, who, "POST", base(world, route) + f"user/alice/api/{kind}",
                        json={"name": "python3"} if kind == "kernels" else None)
        if granted(response):
            key = "id" if kind == "kernels" else "name"
            http(world, "alice", "DELETE", world.hub.url + f"user/alice/api/{kind}/{response.json()[key]}")
            return True
        return False
    return probe


def terminal_listed(world: World, who: str, route: str) -> bool:
    response = http(world, who, "GET", base(world, route) + "user/alice/api/terminals")
    return granted(response) and any(t["name"] == world.terminal for t in response.json())


def server_socket(path):
    def probe(world: World, who: str, route: str) -> bool:
        return websocket_opens(world, who, base(world, route) + "user/alice/" + path(world))
    return probe


SERVER = {
    "status": server_get("api/status"),
    "contents-list": server_get("api/contents", "secret.txt"),
    "contents-read": server_get("api/contents/secret.txt", lambda w: w.secret),
    "contents-write": server_write,
    "kernels-list": server_get("api/kernels", lambda w: w.kernel_id),
    "kernel-start": server_starts("kernels"),
    "kernel-channels-ws": server_socket(lambda w: f"api/kernels/{w.kernel_id}/channels"),
    "sessions": server_get("api/sessions"),
    "terminals-list": terminal_listed,
    "terminal-start": server_starts("terminals"),
    "terminal-ws": server_socket(lambda w: f"terminals/websocket/{w.terminal}"),
    "lab-page": server_get("lab"),
    "scheduler-extension-jobs": server_get("scheduler/jobs"),
    "ssh-endpoint-ws": server_socket(lambda w: "gpulab/ssh"),
    "tensorboard-instances": server_get("tensorboard/api/instances", lambda w: w.tensorboard.rsplit("/", 2)[-2]),
    "tensorboard-data": server_get(lambda w: w.tensorboard.split("/user/alice/", 1)[1] + "data/environment",
                                   "data_location"),
}

# ---------------------------------------------------------------- the hub's API (through the proxy only)


def hub_probe(method: str, path: str, marker: str | None = None, body=None):
    def probe(world: World, who: str, route: str) -> bool:
        return granted(http(world, who, method, world.hub.url + path, json=body), marker)
    return probe


def share_server(world: World, who: str, route: str) -> bool:
    """alice shares her server with carol (and takes it back); an intruder shares it with themself."""
    name = "carol" if who == "alice" else ("mallory" if who == ANONYMOUS else who)
    response = http(world, who, "POST", world.hub.url + "hub/api/shares/alice/", json={"user": name})
    if granted(response) and who == "alice":
        world.client("alice").request("DELETE", "hub/api/shares/alice/")
    return granted(response)


HUB = {
    "user-model": hub_probe("GET", "hub/api/users/alice", "/user/alice/"),
    "token-list": hub_probe("GET", "hub/api/users/alice/tokens", "api_tokens"),
    "token-mint": hub_probe("POST", "hub/api/users/alice/tokens", "token", {"expires_in": 60, "note": "probe"}),
    "server-share": share_server,
    "server-shares-list": hub_probe("GET", "hub/api/shares/alice/", "items"),
}

# ---------------------------------------------------------------- services


def service_get(service: str, path, marker):
    def probe(world: World, who: str, route: str) -> bool:
        url = base(world, route, service) + f"services/{service}/" + (path(world) if callable(path) else path)
        return granted(http(world, who, "GET", url), marker(world) if callable(marker) else marker)
    return probe


def service_send(service: str, method: str, path, body):
    def probe(world: World, who: str, route: str) -> bool:
        url = base(world, route, service) + f"services/{service}/" + path(world)
        return granted(http(world, who, method, url, json=body(world, who) if callable(body) else body))
    return probe


def mlflow_api(path) -> str | object:
    return (lambda w: "api/2.0/mlflow/" + path(w)) if callable(path) else "api/2.0/mlflow/" + path


def run_id(world: World) -> str:
    return world.mlflow_run["info"]["run_id"]


def experiment_id(world: World) -> str:
    return world.mlflow_run["info"]["experiment_id"]


def proxied_artifact(world: World) -> str:
    location = world.mlflow_run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/").strip("/")
    return f"api/2.0/mlflow-artifacts/artifacts/{location}/output.ipynb"


def search_runs(world: World, who: str, route: str) -> bool:
    url = base(world, route, "mlflow") + "services/mlflow/api/2.0/mlflow/runs/search"
    return granted(http(world, who, "POST", url, json={"experiment_ids": [experiment_id(world)]}), run_id(world))


MLFLOW = {
    "experiment-get": service_get("mlflow", mlflow_api(lambda w: f"experiments/get?experiment_id={experiment_id(w)}"),
                                  lambda w: "secret-run"),
    "experiments-search": service_get("mlflow", mlflow_api("experiments/search?max_results=1000"),
                                      lambda w: "secret-run"),
    "run-get": service_get("mlflow", mlflow_api(lambda w: f"runs/get?run_id={run_id(w)}"), run_id),
    "runs-search": search_runs,
    "artifacts-list": service_get("mlflow", mlflow_api(lambda w: f"artifacts/list?run_id={run_id(w)}"),
                                  lambda w: "output.ipynb"),
    "get-artifact": service_get("mlflow", lambda w: f"get-artifact?path=output.ipynb&run_uuid={run_id(w)}",
                                "run-output-of-alice"),
    "proxied-artifact": service_get("mlflow", proxied_artifact, "run-output-of-alice"),
    "log-metric": service_send("mlflow", "POST", mlflow_api(lambda w: "runs/log-metric"),
                               lambda w, who: {"run_id": run_id(w), "key": f"by-{who}", "value": 1,
                                               "timestamp": 0, "step": 0}),
}


def delete_schedule(world: World, who: str, route: str) -> bool:
    """alice deletes a schedule of her own made for the purpose; others try her real one."""
    target = world.schedule["id"]
    if who == "alice":
        target = world.client("alice").request("POST", "services/scheduler/api/schedules", {
            "name": "throwaway", "notebook": notebook("print(1)"), "cron": "0 4 * * *"})["id"]
    url = base(world, route, "scheduler") + f"services/scheduler/api/schedules/{target}"
    return granted(http(world, who, "DELETE", url))


def run_path(suffix: str = ""):
    return lambda w: f"api/runs/{w.run['id']}{suffix}"


SCHEDULER = {
    "schedule-get": service_get("scheduler", lambda w: f"api/schedules/{w.schedule['id']}", lambda w: w.schedule["id"]),
    "schedules-list": service_get("scheduler", "api/schedules", lambda w: w.schedule["id"]),
    "schedule-runs": service_get("scheduler", lambda w: f"api/schedules/{w.run['schedule_id']}/runs",
                                 lambda w: w.run["id"]),
    "schedule-patch": service_send("scheduler", "PATCH", lambda w: f"api/schedules/{w.schedule['id']}",
                                   {"active": True}),
    "schedule-delete": delete_schedule,
    "run-get": service_get("scheduler", run_path(), lambda w: w.run["id"]),
    "runs-list": service_get("scheduler", "api/runs", lambda w: w.run["id"]),
    "run-notebook": service_get("scheduler", run_path("/files/output.ipynb"), "run-output-of-alice"),
    "run-html": service_get("scheduler", run_path("/files/output.html"), "run-output-of-alice"),
    "run-log": service_get("scheduler", run_path("/files/log.txt"), "run-output-of-alice"),
    "page": service_get("scheduler", "", "nightly-secret"),
}


def delete_key(world: World, who: str, route: str) -> bool:
    """alice deletes a key of her own added for the purpose; others try her registered one."""
    target = world.alice_key["id"]
    if who == "alice":
        target = world.client("alice").request("POST", "services/ssh/api/keys",
                                               {"public_key": world.spare_key()})["id"]
    return granted(http(world, who, "DELETE", base(world, route, "ssh") + f"services/ssh/api/keys/{target}"))


SSH = {
    "keys-list": service_get("ssh", "api/keys", lambda w: w.alice_key["fingerprint"]),
    "key-delete": delete_key,
    "keys-page": service_get("ssh", "", lambda w: w.alice_key["fingerprint"]),
}


def add_member(world: World, who: str, route: str) -> bool:
    """alice adds carol (and takes her off again); an intruder tries to add themself."""
    name = "carol" if who == "alice" else ("mallory" if who == ANONYMOUS else who)
    url = base(world, route, "projects") + "services/projects/api/projects/vision/members"
    response = http(world, who, "POST", url, json={"name": name, "role": "editor"})
    if granted(response) and who == "alice":
        world.client("alice").request("DELETE", "services/projects/api/projects/vision/members/user/carol")
    return granted(response)


PROJECTS = {
    "project-get": service_get("projects", "api/projects/vision", lambda w: json.dumps("bob")),
    "projects-list": service_get("projects", "api/projects", '"vision"'),
    "audit": service_get("projects", "api/projects/vision/audit", "bob"),
    "shared-servers": service_get("projects", "api/projects/vision/shared-servers", None),
    "project-patch": service_send("projects", "PATCH", lambda w: "api/projects/vision",
                                  lambda w, who: {"description": f"by {who}"}),
    "add-member": add_member,
    "page": service_get("projects", "vision", "bob"),
}


def web_cells() -> list[Cell]:
    """Every web cell, once per route it can be asked through."""
    def cells(area: str, table: dict, intruders: tuple[str, ...], routes=ROUTES):
        return [Cell(f"{area}/{name}/{route}", (lambda p, r: lambda w, who: p(w, who, r))(probe, route), intruders)
                for name, probe in table.items() for route in routes]

    everyone = ("bob", "mallory", ANONYMOUS)
    return [
        *cells("server", SERVER, ("bob", ANONYMOUS)),
        *cells("hub", HUB, ("bob", ANONYMOUS), routes=("proxy",)),
        *cells("mlflow", MLFLOW, everyone),
        *cells("scheduler", SCHEDULER, everyone),
        *cells("ssh", SSH, everyone),
        *cells("projects", PROJECTS, ("mallory", ANONYMOUS)),
    ]
