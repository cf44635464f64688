"""Stopping a server whose kernel is busy, and restarting the hub with servers running.

stop: one user's server with a kernel busy in a loop (and a child process of that kernel) is
stopped through the hub's REST API; timed from `DELETE /hub/api/users/NAME/server` until the
hub reports no server, and until no process of the user's account is left (kernel and child
included; what is still there after 60 s is listed, then killed). Repeated `-n` times.

restart: `-s` servers running (one per user, default 20: issue 16's case); the hub is stopped
with SIGTERM (timed until its process exited) and started again, `-r` times; timed from the
new hub process's start until its REST API answers through the proxy (`GET /hub/api/`, polled
every 20 ms), until every server answers through the proxy again, and until the hub logs
"JupyterHub is now running" (start-up complete: for gpulab, every managed service has
answered); servers the hub no longer lists afterwards are counted as lost. The stock hub runs
with `cleanup_servers = False` (its default stops every server at shutdown) and has no services.
The ratio is gpulab's median time to the API over stock's. The load average is printed before
and after: run it on a quiet machine.

Two hubs, one after the other, on this machine:
- gpulab: `gpulab up` (local backend, a system account per user as root, traefik)
- stock JupyterHub + LocalProcessSpawner + traefik (the same proxy)

Run as root: `.venv/bin/python benchmarks/stop_restart.py [-n 3] [-s 20] [-r 1]` (`-n 0`: restarts only).
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
from tests.support.hub import ADMIN_TOKEN, GPULAB, RunningHub, prepare_hub, wait_for  # noqa: E402
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


Restart = tuple[float, float, float, int, float]  # API, every server, start-up complete, servers lost, stop


def time_restart(api: HubClient, names: list[str], stop, start, started_up) -> Restart:
    """(s until the API answers, s until every server answers through the proxy, s until the
    hub's start-up is complete, servers lost, s the stop took: SIGTERM until the hub process
    exited). `start` may return as soon as the hub process is started; `started_up()` says
    whether the hub logged "JupyterHub is now running"."""
    stopping = time.perf_counter()
    stop()
    stopped = time.perf_counter() - stopping
    started = time.perf_counter()
    start()
    wait_for(lambda: answering(f"{api.url}hub/api/"), 120, "the hub's API", interval=0.02)
    api_up = time.perf_counter() - started
    listed = [n for n in names if api.request("GET", f"hub/api/users/{n}")["servers"].get("", {}).get("ready")]
    pending = {f"{api.url}user/{n}/api/status" for n in listed}  # each server, until it has answered once

    def every_server_answered() -> bool:
        pending.difference_update([url for url in list(pending) if answering(url)])
        return not pending

    wait_for(every_server_answered, 120, "every server", interval=0.02)
    all_up = time.perf_counter() - started
    wait_for(started_up, 120, "the hub's start-up to complete", interval=0.02)
    return api_up, all_up, time.perf_counter() - started, len(names) - len(listed), stopped


def launch(hub: RunningHub) -> None:
    """`gpulab up` for `hub`, not waiting for anything (RunningHub.start waits for the whole start-up)."""
    hub.log_path = hub.workdir / f"hub-{int(time.time() * 1000)}.log"
    with open(hub.log_path, "wb") as log:
        hub.process = subprocess.Popen([GPULAB, "up", "--config", str(hub.settings_file)], cwd=hub.workdir,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1", **hub.extra_env})


RUNNING = "JupyterHub is now running"


def gpulab_started_up(hub: RunningHub) -> bool:
    if hub.process is not None and hub.process.poll() is not None:
        raise RuntimeError(f"the hub exited with {hub.process.returncode}:\n{hub.log_tail()}")
    return hub.log_path is not None and RUNNING in hub.log_path.read_text(errors="replace")


def stock_started_up(log: Path, starts: int) -> bool:
    """Whether the stock hub, started `starts` times with its log appended to `log`, completed the last start-up
    (before that it dies at SIGTERM without stopping its traefik, which then holds the next one's ports)."""
    return log.read_text(errors="replace").count(RUNNING) >= starts


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def spawn_all(api: HubClient, names: list[str]) -> None:
    for name in names:
        api.request("POST", f"hub/api/users/{name}/server")
    for name in names:
        wait_for(lambda: answering(f"{api.url}user/{name}/api/status"), 300, f"{name}'s server", interval=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3, help="stops per hub (default 3; 0: no stops)")
    parser.add_argument("-s", type=int, default=20, help="servers running through the restart (default 20)")
    parser.add_argument("-r", type=int, default=1, help="restarts per hub (default 1)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: servers run under their users' accounts")
    prefix = f"s{os.getpid() % 10000}-"
    rows: list[tuple[str, list]] = []
    restarts: list[tuple[str, list[Restart]]] = []
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        (workdir / "homes").mkdir(mode=0o755)
        try:
            hub = prepare_hub(workdir / "gpulab", {"hub": {"log_level": "INFO"}, "spawner": {"local": {
                "account_prefix": prefix, "home_root": str(workdir / "homes")}}}).start()
            try:
                if args.n:
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
                restarts.append(("gpulab (local backend, traefik)", [
                    time_restart(hub.api, names, hub.stop, lambda: launch(hub), lambda: gpulab_started_up(hub))
                    for _ in range(args.r)]))
            finally:
                hub.stop()
            stock_user = f"{prefix}stock"
            names = [f"{prefix}r{i}" for i in range(args.s)]
            for name in names + ([stock_user] if args.n else []):
                system_user_for_stock(name, workdir / "homes")
            _ACCOUNTS[stock_user] = stock_user
            api, stop_stock, start = stock_hub(workdir / "stock-traefik", "traefik", STOCK_KEEPS_SERVERS)

            def stop() -> None:
                stop_stock()
                # The stock hub sometimes leaves its traefik running (and the next traefik then cannot bind
                # its ports); end it, so each restart starts a fresh proxy, as gpulab's does.
                end_processes_in(workdir / "stock-traefik")
            try:
                if args.n:
                    api.request("POST", f"hub/api/users/{stock_user}")
                    rows.append(("JupyterHub LocalProcessSpawner (traefik)", time_stops(api, stock_user, args.n)))
                for name in names:
                    api.request("POST", f"hub/api/users/{name}")
                spawn_all(api, names)
                stock_log = workdir / "stock-traefik" / "hub.log"
                restarts.append(("JupyterHub LocalProcessSpawner (traefik)", [
                    time_restart(api, names, stop, start, lambda: stock_started_up(stock_log, run + 2))
                    for run in range(args.r)]))
            finally:
                stop()
        finally:
            remove_benchmark_accounts(prefix)
            end_processes_in(workdir)  # the stock hub, which keeps its servers, leaves its traefik running too

    print(f"\nload average (1, 5, 15 min): {load_before} before, {load_average()} after")
    if rows:
        print(f"\nstop a server with a busy kernel (and its child); {args.n} stops each\n")
        print(f"{'hub':44} {'hub says stopped, median s':>27} {'no process left, median s':>26}  left behind")
    for label, results in rows:
        said = statistics.median(r[0] for r in results)
        gone = [r[1] for r in results if r[1] is not None]
        left = sorted({p for r in results for p in r[2]})
        gone_text = f"{statistics.median(gone):.3f}" if len(gone) == len(results) else f"{len(results) - len(gone)} never"
        print(f"{label:44} {said:27.3f} {gone_text:>26}  {'; '.join(left) or '-'}")
    print(f"\nhub restart (SIGTERM, start) with {args.s} servers running; median of {args.r}\n")
    print(f"{'hub':44} {'stop, s':>8} {'API answers, s':>15} {'every server answers, s':>24}"
          f" {'start-up complete, s':>21} {'servers lost':>13}")
    for label, runs in restarts:
        print(f"{label:44} {statistics.median(r[4] for r in runs):8.3f} {statistics.median(r[0] for r in runs):15.3f}"
              f" {statistics.median(r[1] for r in runs):24.3f} {statistics.median(r[2] for r in runs):21.3f}"
              f" {max(r[3] for r in runs):13d}")
    print("(stop: SIGTERM until the hub process exited, its proxy and, for gpulab, its services stopped; the start "
          "columns count from the new hub process's start. Start-up complete: the hub logged \"JupyterHub is now "
          "running\"; gpulab's managed services have all answered by then, the stock hub has none)")
    (_, gpulab_runs), (_, stock_runs) = restarts
    ratio = statistics.median(r[0] for r in gpulab_runs) / statistics.median(r[0] for r in stock_runs)
    print(f"\nAPI answers after a restart, gpulab / stock: {ratio:.2f} (issue 16: <= 3 s with 20 servers, 0 lost)")


if __name__ == "__main__":
    main()
