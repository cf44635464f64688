"""Stopping a server whose kernel is busy, and restarting the hub with servers running.

stop: one user's server with a kernel busy in a loop (and a child process of that kernel) is
stopped through the hub's REST API; timed from `DELETE /hub/api/users/NAME/server` until the
hub reports no server, and until no process of the user's account is left (kernel and child
included; what is still there after 60 s is listed, then killed). Repeated `-n` times.

(Hub restart with servers running is not measured here yet.)

Two hubs, one after the other, on this machine:
- gpulab: `gpulab up` (local backend, a system account per user as root, traefik)
- stock JupyterHub + LocalProcessSpawner + traefik (the same proxy)

Run as root: `.venv/bin/python benchmarks/stop_restart.py [-n 3]`.
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
    answering, remove_benchmark_accounts, stock_hub, system_user_for_stock,
)
from gpulab.hub_config.client import HubClient  # noqa: E402
from tests.support.hub import ADMIN_TOKEN, prepare_hub, wait_for  # noqa: E402
from tests.support.kernels import Kernel  # noqa: E402

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
    results = []
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3, help="stops per hub (default 3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: servers run under their users' accounts")
    prefix = f"s{os.getpid() % 10000}-"
    rows = []
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
            finally:
                hub.stop()
            stock_user = f"{prefix}stock"
            system_user_for_stock(stock_user, workdir / "homes")
            _ACCOUNTS[stock_user] = stock_user
            api, stop = stock_hub(workdir / "stock-traefik", "traefik")
            try:
                api.request("POST", f"hub/api/users/{stock_user}")
                rows.append(("JupyterHub LocalProcessSpawner (traefik)", time_stops(api, stock_user, args.n)))
            finally:
                stop()
        finally:
            remove_benchmark_accounts(prefix)

    print(f"\nstop a server with a busy kernel (and its child); {args.n} stops each\n")
    print(f"{'hub':44} {'hub says stopped, median s':>27} {'no process left, median s':>26}  left behind")
    for label, results in rows:
        said = statistics.median(r[0] for r in results)
        gone = [r[1] for r in results if r[1] is not None]
        left = sorted({p for r in results for p in r[2]})
        gone_text = f"{statistics.median(gone):.3f}" if len(gone) == len(results) else f"{len(results) - len(gone)} never"
        print(f"{label:44} {said:27.3f} {gone_text:>26}  {'; '.join(left) or '-'}")

if __name__ == "__main__":
    main()
