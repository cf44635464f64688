"""Load: N new users at once, each creating an account, spawning, running `1+1` and stopping.

N users (default 50, `-u N`) start together, one thread each. Each user's visit:
1. the user is created through the hub's REST API (`POST /hub/api/users/NAME`), with a
   system account: gpulab makes it at the first spawn; the stock hub makes it when the user is
   added (`LocalAuthenticator.create_system_users`, `useradd` as its `add_user_cmd`);
2. its server is spawned (`POST /hub/api/users/NAME/server`), and the spawn's progress stream
   (`GET /hub/api/users/NAME/server/progress`, server-sent events) is read until the hub says the
   server is ready, as JupyterHub's spawn page does in a browser; then `GET /user/NAME/api/status`
   through the public proxy must return 200 (the "spawn" column: request to that answer);
3. a kernel is started through the server's REST API through the proxy, `1+1` is sent as an
   execute_request over the kernel's channels WebSocket, and the execute_result must be `2`;
4. the server is stopped (`DELETE`) until the hub lists no server.
Whole visit (1 to 4) and spawn (2) are timed per user; a user whose visit raised or timed
out is counted as failed with its error. The stop is polled every 0.5 s (50 users polling every
10 ms would load the hub more than the stops do), so whole visits are to about half a second.
(Until this file waited on the progress stream, step 2 polled the status every 0.5 s as well:
about 20 requests per user, through the proxy to the hub while the server had no route, ~1000
requests that no browser makes, in the hub's CPU on both sides.)

The hub's memory (RSS, MiB) is read before the first user and after the last stop: the hub
process alone, and with all its descendants (the proxy, and with gpulab its managed services).

Two hubs, one after the other, on this machine:
- gpulab: `gpulab up --admin admin` (local backend, a system account per user as root, traefik)
- stock JupyterHub + LocalProcessSpawner + traefik (the same proxy), with gpulab's default
  start and HTTP timeouts (120 s, 60 s) so a slow start gets the same time on both

Each hub's users start once its start-up is complete (it logged "JupyterHub is now running") and
its processes are quiet (below 5 % of a core for a second, at most 30 s: what a hub does right
after it starts, gpulab's start of its zygote for one, is not the users' to wait for). The
stock hub's API answers earlier, while its start() still waits for traefik to confirm the hub's
route; its `useradd` runs on its event loop, and 50 of them then outlast that wait (traefik-proxy's
check_route_timeout, 30 s): the hub used to exit with "TimeoutError: Traefik route for /: not ready".

Run as root: `.venv/bin/python benchmarks/load.py [-u 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
from jupyter_client.session import Session
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.spawn_latency import (  # noqa: E402
    answering, end_processes_in, remove_benchmark_accounts, stock_hub,
)
from gpulab.hub_config.client import HubClient  # noqa: E402
from gpulab.spawner.accounts import MANAGED_MARKER  # noqa: E402
from tests.support.hub import ADMIN_TOKEN, prepare_hub, wait_for  # noqa: E402
from tests.support.kernels import Kernel  # noqa: E402

POLL = 0.5
STOCK_CONFIG = """
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
c.LocalAuthenticator.create_system_users = True
c.LocalAuthenticator.add_user_cmd = ["useradd", "--create-home", "--home-dir", "{homes}/USERNAME",
                                     "--comment", "{marker}", "--user-group"]
"""


@dataclass
class Visit:
    total: float | None  # s from creating the user to the hub listing no server; None if it failed
    spawn: float | None  # s from the spawn request to the server answering through the proxy
    error: str = ""


async def one_plus_one(kernel: Kernel) -> str:
    """`1+1` as an execute_request over the kernel's channels WebSocket: the execute_result's text."""
    url = kernel.hub_url.replace("http", "ws", 1) + kernel.path + f"api/kernels/{kernel.kernel_id}/channels"
    connection = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {kernel.token}"}))
    request = Session(username="load").msg("execute_request", content={"code": "1+1", "silent": False})
    connection.write_message(json.dumps({**request, "channel": "shell"}, default=str))
    try:
        while (raw := await connection.read_message()) is not None:
            message = json.loads(raw)
            if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
                continue
            if message["header"]["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
            if message["header"]["msg_type"] == "error":
                return f"{message['content']['ename']}: {message['content']['evalue']}"
    finally:
        connection.close()
    raise ConnectionError("the kernel's WebSocket closed before the result")


def until_ready(url: str, name: str, timeout: float) -> None:
    """Read the spawn's progress events, as the spawn page does, until the hub says it is ready."""
    request = urllib.request.Request(f"{url}hub/api/users/{name}/server/progress",
                                     headers={"Authorization": f"token {ADMIN_TOKEN}", "Accept": "text/event-stream"})
    with urllib.request.urlopen(request, timeout=timeout) as stream:
        for raw in stream:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[len("data:"):])
            if event.get("ready"):
                return
            if event.get("failed"):
                raise RuntimeError(f"the spawn failed: {event.get('message', '')}")
    raise ConnectionError("the progress stream ended before the server was ready")


def visit(api: HubClient, name: str) -> Visit:
    started = time.perf_counter()
    step = "create the user"
    try:
        api.request("POST", f"hub/api/users/{name}")
        step, asked = "spawn", time.perf_counter()
        api.request("POST", f"hub/api/users/{name}/server")
        until_ready(api.url, name, 300)
        wait_for(lambda: answering(f"{api.url}user/{name}/api/status"), 60, f"{name}'s server", interval=0.1)
        step, spawn = "1+1 in a kernel", time.perf_counter() - asked
        result = asyncio.run(asyncio.wait_for(one_plus_one(Kernel(api.url, name, ADMIN_TOKEN)), 120))
        if result != "2":
            raise RuntimeError(f"1+1 gave {result!r}")
        step = "stop"
        api.request("DELETE", f"hub/api/users/{name}/server")
        wait_for(lambda: api.request("GET", f"hub/api/users/{name}")["servers"] == {}, 300, f"{name}'s stop",
                 interval=POLL)
        return Visit(time.perf_counter() - started, spawn)
    except Exception as error:  # one user's failure is a result, not the end of the run
        # the user's name left out, so that the same failure of many users is one line
        return Visit(None, None, f"{step}: {type(error).__name__}: {str(error).replace(name, 'NAME')[:160]}")


def all_at_once(api: HubClient, names: list[str]) -> list[Visit]:
    patient = replace(api, timeout=300)  # a hub busy with N spawns answers slowly: slow is not failed
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return list(pool.map(lambda name: visit(patient, name), names))


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0  # it ended between the listing and the reading
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no resident memory


def descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name (2nd field) may hold spaces: the parent is the 2nd field after its ")"
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def memory(pid: int) -> tuple[float, float]:
    """(the hub process's RSS, with all its descendants') in MiB."""
    own = rss_mib(pid)
    return own, own + sum(rss_mib(child) for child in descendants(pid))


def hub_pid(config: Path) -> int:
    """The stock hub's process: the one whose command line names its config file."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_text().split("\0")
        except OSError:
            continue
        if str(config) in words and any(word.endswith("/jupyterhub") for word in words):
            return int(cmdline.parent.name)
    raise LookupError(f"no process runs {config}")


def hub_errors(log: Path) -> list[str]:
    """The hub's error lines, once each without their time stamps: why a user failed, when one did."""
    lines = log.read_text(errors="replace").splitlines()
    return list(dict.fromkeys(line.split("]", 1)[-1].strip()[:200] for line in lines if line.startswith("[E ")))


def hub_exit_reason(log: Path) -> str:
    """The hub's own last error or critical record (its servers log to the same file, so the file's
    last lines are theirs), with the last line of its traceback: the error the hub exited with."""
    lines = log.read_text(errors="replace").splitlines()
    for index in range(len(lines) - 1, -1, -1):
        words = lines[index].split(maxsplit=4)
        if len(words) > 3 and words[0] in ("[E", "[C") and words[3] == "JupyterHub":
            message = lines[index].split("]", 1)[-1].strip()
            traceback = []
            for line in lines[index + 1:]:
                if not line.startswith(" "):
                    break
                if line.strip():
                    traceback.append(line.strip())
            return " ".join(part for part in (message, traceback[-1] if traceback else "") if part)[:200]
    return " | ".join(lines[-3:])[:200]  # no error of its own: the log's end


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue  # it ended meanwhile
        total += times.user + times.system
    return total


def settle(pid: int, quiet: float = 0.05, longest: float = 30.0) -> None:
    """Until the hub and its descendants use less than `quiet` of a core over a second (at most `longest` s)."""
    hub = psutil.Process(pid)
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        processes = [hub, *hub.children(recursive=True)]
        before = cpu_seconds(processes)
        time.sleep(1.0)
        if cpu_seconds(processes) - before < quiet:
            return


def measure(api: HubClient, names: list[str], pid: int, log: Path) -> tuple[list[Visit], tuple, tuple, list[str]]:
    settle(pid)
    before, load_before = memory(pid), os.getloadavg()[0]
    visits = all_at_once(api, names)
    after, load_after = memory(pid), os.getloadavg()[0]
    # the 1-minute load average before and after: a machine busy with other work slows every row
    notes = [f"load average {load_before:.1f} before, {load_after:.1f} after"]
    if after[0] == 0:  # gone, or a zombie its parent has not reaped yet: either way it exited
        return visits, before, after, [*notes, "the hub process exited during the run; its last error:",
                                       hub_exit_reason(log)]
    return visits, before, after, [*notes, *(hub_errors(log) if any(v.error for v in visits) else [])]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-u", type=int, default=50, help="users at once (default 50)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: servers run under their users' accounts")
    prefix = f"l{os.getpid() % 10000}-"
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        homes = workdir / "homes"
        homes.mkdir(mode=0o755)
        try:
            # an admin, as `gpulab up --admin NAME` gives every real hub: a hub with a user gets its
            # default server's zygote ready once it runs (hub_app.py); the users arrive after that
            hub = prepare_hub(workdir / "gpulab", {"hub": {"log_level": "INFO"}, "auth": {"admin_users": ["admin"]},
                                                   "spawner": {"local": {"account_prefix": prefix,
                                                                         "home_root": str(homes)}}}).start()
            try:
                rows.append(("gpulab (local backend, traefik)",
                             *measure(hub.api, [f"u{i}" for i in range(args.u)], hub.process.pid, hub.log_path)))
            finally:
                hub.stop()
            api, stop, _ = stock_hub(workdir / "stock-traefik", "traefik",
                                     STOCK_CONFIG.format(homes=homes, marker=MANAGED_MARKER))
            try:
                stock = workdir / "stock-traefik"
                rows.append(("JupyterHub LocalProcessSpawner (traefik)",
                             *measure(api, [f"{prefix}u{i}" for i in range(args.u)],
                                      hub_pid(stock / "jupyterhub_config.py"), stock / "hub.log")))
            finally:
                stop()
        finally:
            remove_benchmark_accounts(prefix)
            end_processes_in(workdir)
    print_table(args.u, rows)


def print_table(users: int, rows: list) -> None:
    print(f"\n{users} new users at once: create, spawn, 1+1 over the kernel WebSocket, stop\n")
    print(f"{'hub':42} {'OK':>7} {'visit p50 s':>11} {'p95 s':>7} {'spawn p50 s':>11} {'p95 s':>7}"
          f" {'hub RSS MiB before -> after':>28} {'with children MiB':>20}")
    p95s = []
    for label, visits, before, after, errors in rows:
        done = [v for v in visits if v.total is not None]
        totals, spawns = [v.total for v in done], [v.spawn for v in done]
        times = (f"{statistics.median(totals):11.1f} {p95(totals):7.1f} {statistics.median(spawns):11.1f}"
                 f" {p95(spawns):7.1f}") if done else f"{'-':>11} {'-':>7} {'-':>11} {'-':>7}"
        p95s.append(p95(totals) if done else None)
        print(f"{label:42} {len(done):3d}/{len(visits):<3d} {times} {before[0]:12.0f} -> {after[0]:<12.0f}"
              f" {before[1]:7.0f} -> {after[1]:<7.0f}")
        for error in sorted({v.error for v in visits if v.error}):
            print(f"    failed ({sum(v.error == error for v in visits)}): {error}")
        print(f"    {errors[0]}")
        for line in errors[1:6]:
            print(f"    hub log: {line}")
    if len(p95s) == 2 and all(p95s):
        print(f"\nvisit p95, gpulab / stock: {p95s[0] / p95s[1]:.2f} (goal: all succeed, p95 <= 10 s)")


if __name__ == "__main__":
    main()
