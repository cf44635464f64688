"""Stopping a server whose kernel is busy, and restarting the hub with servers running.

stop: one user's server with a kernel busy in a loop (and a child process of that kernel) is
stopped through the hub's REST API; timed from `DELETE /hub/api/users/NAME/server` until the
hub reports no server, and until no process of the user's account is left (kernel and child
included; what is still there after 60 s is listed, then killed). Repeated `-n` times.

restart: `-s` servers running (one per user); the hub is stopped with SIGTERM and started
again; timed from the new hub process's start until its REST API answers, and until every server
answers through the proxy again; servers the hub no longer lists afterwards are counted as lost.
The stock hub runs with `cleanup_servers = False` (its default stops every server at shutdown).

Two hubs, one after the other, on this machine:
- gpulab: `gpulab up` (local backend, a system account per user as root, traefik)
- stock JupyterHub + LocalProcessSpawner + traefik (the same proxy)

Run as root: `.venv/bin/python benchmarks/stop_restart.py [-n 3] [-s 10]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.spawn_latency import (  # noqa: E402
    answering, end_processes_in, remove_benchmark_accounts, stock_hub, system_user_for_stock,
)
from gpulab.hub_config.client import HubClient  # noqa: E402
from tests.support.hub import ADMIN_TOKEN, prepare_hub, wait_for  # noqa: E402
from tests.support.kernels import Kernel  # noqa: E402

STOCK_KEEPS_SERVERS = "\nc.JupyterHub.cleanup_servers = False\n"
BUSY = "import subprocess; child = subprocess.Popen(['sleep', '600'])\nwhile True: pass"


def processes_of(account: str) -> list[str]:
    result = subprocess.run(["pgrep", "-u", account], capture_output=True, text=True)
    return result.stdout.split()


def start_busy_kernel(api: HubClient, name: str) -> None:
    kernel = Kernel(api.url, name, ADMIN_TOKEN)
    # the cell never ends: run it in the background and leave it
    threading.Thread(target=lambda: _ignore(lambda: kernel.run(BUSY, timeout=600)), daemon=True).start()
    wait_for(lambda: any(_is_sleep(pid) for pid in processes_of(_ACCOUNTS[name])), 30, "the kernel's child")


def _ignore(call) -> None:
    try:
        call()
    except Exception:  # the kernel dies with the server: that is the point
        pass


def _is_sleep(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
    except OSError:
        return False


_ACCOUNTS: dict[str, str] = {}  # hub user -> system account


def time_stops(api: HubClient, name: str, count: int) -> list[tuple[float, float | None, list[str]]]:
    """(s until the hub says stopped, s until no process is left or None, what was left after 60 s)."""
    results: list[tuple[float, float | None, list[str]]] = []
    account = _ACCOUNTS[name]
    for _ in range(count):
        api.request("POST", f"hub/api/users/{name}/server")
        wait_for(lambda: answering(f"{api.url}user/{name}/api/status"), 120, "the server", interval=0.05)
        start_busy_kernel(api, name)
        started = time.perf_counter()
        api.request("DELETE", f"hub/api/users/{name}/server")
        wait_for(lambda: api.request("GET", f"hub/api/users/{name}")["servers"] == {}, 180, "the stop", interval=0.05)
        stopped = time.perf_counter() - started
        try:
            wait_for(lambda: not processes_of(account), 60, "the account's processes to end", interval=0.05)
            results.append((stopped, time.perf_counter() - started, []))
        except TimeoutError:
            left = [Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:60] for pid in processes_of(account)]
            subprocess.run(["pkill", "-KILL", "-u", account], capture_output=True)
            results.append((stopped, None, left))
    return results


def time_restart(api: HubClient, names: list[str], stop, start) -> tuple[float, float, int]:
    """(s until the API answers, s until every server answers through the proxy, servers lost)."""
    stop()
    started = time.perf_counter()
    start()
    wait_for(lambda: answering(f"{api.url}hub/api/"), 120, "the hub's API", interval=0.02)
    api_up = time.perf_counter() - started
    listed = [n for n in names if api.request("GET", f"hub/api/users/{n}")["servers"].get("", {}).get("ready")]
    wait_for(lambda: all(answering(f"{api.url}user/{n}/api/status") for n in listed), 120, "every server",
             interval=0.02)
    return api_up, time.perf_counter() - started, len(names) - len(listed)


def spawn_all(api: HubClient, names: list[str]) -> None:
    for name in names:
        api.request("POST", f"hub/api/users/{name}/server")
    for name in names:
        wait_for(lambda: answering(f"{api.url}user/{name}/api/status"), 300, f"{name}'s server", interval=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3, help="stops per hub (default 3)")
    parser.add_argument("-s", type=int, default=10, help="servers running through the restart (default 10)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: servers run under their users' accounts")
    prefix = f"s{os.getpid() % 10000}-"
    rows, restarts = [], []
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        (workdir / "homes").mkdir(mode=0o755)
        try:
            hub = prepare_hub(workdir / "gpulab", {"hub": {"log_level": "INFO"}, "spawner": {"local": {
                "account_prefix": prefix, "home_root": str(workdir / "homes")}}}).start()
            try:
                hub.api.request("POST", "hub/api/users/bench")
                _ACCOUNTS["bench"] = f"{prefix}bench"
                hub.api.request("POST", "hub/api/users/bench/server")  # creates the account
                wait_for(lambda: answering(f"{hub.api.url}user/bench/api/status"), 120, "the first server")
                hub.api.request("DELETE", "hub/api/users/bench/server")
                wait_for(lambda: hub.api.request("GET", "hub/api/users/bench")["servers"] == {}, 120, "a stop")
                rows.append(("gpulab (local backend, traefik)", time_stops(hub.api, "bench", args.n)))
                names = [f"r{i}" for i in range(args.s)]
                for name in names:
                    hub.api.request("POST", f"hub/api/users/{name}")
                spawn_all(hub.api, names)
                restarts.append(("gpulab (local backend, traefik)", time_restart(hub.api, names, hub.stop, hub.start)))
            finally:
                hub.stop()
            stock_user = f"{prefix}stock"
            system_user_for_stock(stock_user, workdir / "homes")
            _ACCOUNTS[stock_user] = stock_user
            names = [f"{prefix}r{i}" for i in range(args.s)]
            for name in names:
                system_user_for_stock(name, workdir / "homes")
            api, stop, start = stock_hub(workdir / "stock-traefik", "traefik", STOCK_KEEPS_SERVERS)
            try:
                api.request("POST", f"hub/api/users/{stock_user}")
                rows.append(("JupyterHub LocalProcessSpawner (traefik)", time_stops(api, stock_user, args.n)))
                for name in names:
                    api.request("POST", f"hub/api/users/{name}")
                spawn_all(api, names)
                restarts.append(("JupyterHub LocalProcessSpawner (traefik)", time_restart(api, names, stop, start)))
            finally:
                stop()
        finally:
            remove_benchmark_accounts(prefix)
            end_processes_in(workdir)  # the stock hub, which keeps its servers, leaves its traefik running too

    print(f"\nstop a server with a busy kernel (and its child); {args.n} stops each\n")
    print(f"{'hub':44} {'hub says stopped, median s':>27} {'no process left, median s':>26}  left behind")
    for label, results in rows:
        said = statistics.median(r[0] for r in results)
        gone = [r[1] for r in results if r[1] is not None]
        left = sorted({p for r in results for p in r[2]})
        gone_text = f"{statistics.median(gone):.3f}" if len(gone) == len(results) else f"{len(results) - len(gone)} never"
        print(f"{label:44} {said:27.3f} {gone_text:>26}  {'; '.join(left) or '-'}")
    print(f"\nhub restart (SIGTERM, start) with {args.s} servers running\n")
    print(f"{'hub':44} {'API answers, s':>15} {'every server answers, s':>24} {'servers lost':>13}")
    for label, (api_up, all_up, lost) in restarts:
        print(f"{label:44} {api_up:15.3f} {all_up:24.3f} {lost:13d}")


if __name__ == "__main__":
    main()
