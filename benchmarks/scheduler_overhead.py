"""Scheduler overhead and trigger lag, measured against bare Papermill in the same run.

1. Overhead: a trivial notebook (one cell) run N times (default 5) through gpulab (POST
   /services/scheduler/api/runs until the run is COMPLETED with its executed notebook and
   HTML stored) and through the bare `papermill in.ipynb out.ipynb` command on the same
   machine. Prints medians and the ratio; goal (issue 16): gpulab at most 0.5x bare papermill.
   After a run the scheduler starts a standby runner for its owner's next one (the warm path):
   each measurement starts after a pause (--settle, default 3 s), so neither side shares the
   CPUs with a standby warming up; how many of gpulab's runs were handed to a standby is printed.
2. Trigger lag: a schedule every minute for K slots (default 3): from the scheduled time to
   the kernel being ready, and to the first cell starting (from the executed notebook's
   cell metadata). Target: p50 under 0.5 s. This part takes about K minutes.

Run: `.venv/bin/python benchmarks/scheduler_overhead.py [-n 5] [--slots 3]` (as root for per-user accounts).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpulab.hub_config.client import HubClient  # noqa: E402
from tests.support.hub import HubFactory, wait_for  # noqa: E402
from tests.support.scheduler_runs import notebook


BIN = Path(sys.executable).parent
FINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "STOPPED")


def through_gpulab(client: HubClient, nb: dict) -> float:
    started = time.perf_counter()
    run = client.request("POST", "services/scheduler/api/runs", {"name": "bench", "notebook": nb})
    done = wait_for(lambda: (r := client.request("GET", f"services/scheduler/api/runs/{run['id']}"))["status"]
                    in FINAL and r, 120, "the run", interval=0.02)
    elapsed = time.perf_counter() - started
    assert done["status"] == "COMPLETED" and {"output.ipynb", "output.html"} <= set(done["outputs"]), done
    return elapsed


def bare_papermill(folder: Path, nb: dict, account: str | None) -> float:
    """The papermill command, as the same account and in the same home the scheduler's runs use."""
    source = folder / "bare.ipynb"
    source.write_text(json.dumps(nb))
    source.chmod(0o644)
    command = [str(BIN / "papermill"), str(source), "-", "--no-progress-bar"]
    if account is not None:
        entry = pwd.getpwnam(account)
        command = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups",
                   "env", f"HOME={entry.pw_dir}", f"USER={account}", *command]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=entry.pw_dir if account else folder)
    return time.perf_counter() - started


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def trigger_lags(client: HubClient, nb: dict, slots: int) -> tuple[list[float], list[float]]:
    schedule = client.request("POST", "services/scheduler/api/schedules",
                              {"name": "lag", "notebook": nb, "cron": "* * * * *"})
    kernel, first_cell = [], []
    seen: set[str] = set()
    deadline = time.monotonic() + 70 * (slots + 1)
    while len(seen) < slots and time.monotonic() < deadline:
        for run in client.request("GET", f"services/scheduler/api/schedules/{schedule['id']}/runs"):
            if run["id"] in seen or run["status"] != "COMPLETED":
                continue
            seen.add(run["id"])
            slot = parse(run["slot"])
            kernel.append((parse(run["kernel_ready_at"]) - slot).total_seconds())
            executed = client.request("GET", f"services/scheduler/api/runs/{run['id']}/files/output.ipynb")
            start = executed["cells"][0]["metadata"]["execution"]["iopub.execute_input"]
            first_cell.append((parse(start) - slot).total_seconds())
        time.sleep(1)
    client.request("PATCH", f"services/scheduler/api/schedules/{schedule['id']}", {"active": False})
    return kernel, first_cell


def handed_to_standbys(log: str) -> int:
    """Runs the scheduler's log says it handed to a standby ("started as OWNER (pid:ticks@standby)")."""
    return len(re.findall(r"run \S+ of bench started as \S+ \(\d+:\d+@", log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5, help="runs per side (default 5)")
    parser.add_argument("--slots", type=int, default=3, help="cron slots for trigger lag (default 3; 0 skips it)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds of quiet before each measurement (default 3)")
    parser.add_argument("--without-mlflow", action="store_true",
                        help="switch the MLflow service off, so runs are not logged to it (shows what logging costs)")
    args = parser.parse_args()
    nb = notebook("print('hello')")
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-sched-", dir="/tmp") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        (folder / "homes").mkdir(mode=0o755)
        factory = HubFactory(folder, {"hub": {"log_level": "INFO"}, "spawner": {"local": {
            "account_prefix": "bs-", "home_root": str(folder / "homes")}}})
        hub = factory.start({"scheduler": {"prewarm_seconds": 5}, "mlflow": {"enabled": not args.without_mlflow}})
        try:
            hub.create_user("bench")
            client = HubClient(hub.url, hub.user_token("bench"))
            through_gpulab(client, nb)  # warm up: the account and caches
            account = "bs-bench" if os.geteuid() == 0 else None
            bare_papermill(folder, nb, account)
            ours, bare = [], []
            warm_before = handed_to_standbys(hub.log_path.read_text(errors="replace"))
            for _ in range(args.n):  # interleaved, so both sides see the same machine load
                time.sleep(args.settle)
                ours.append(through_gpulab(client, nb))
                time.sleep(args.settle)
                bare.append(bare_papermill(folder, nb, account))
            warm = handed_to_standbys(hub.log_path.read_text(errors="replace")) - warm_before
            load = os.getloadavg()
            lags = trigger_lags(client, nb, args.slots) if args.slots else ([], [])
        finally:
            factory.cleanup()
            subprocess.run(["userdel", "-rf", "bs-bench"], capture_output=True)
    print(f"\ntrivial notebook, {args.n} runs each; gpulab's runs {'are not' if args.without_mlflow else 'are also'} "
          "logged as MLflow runs\n")
    print(f"{'path':52} {'median s':>9} {'min s':>7} {'max s':>7}")
    for label, values in (("gpulab: request -> COMPLETED, notebook + HTML stored", ours),
                          ("bare papermill command, same account and home", bare)):
        print(f"{label:52} {statistics.median(values):9.3f} {min(values):7.3f} {max(values):7.3f}")
    print(f"\noverhead: gpulab / bare papermill = {statistics.median(ours) / statistics.median(bare):.2f} (goal <= 0.5, issue 16)")
    print(f"gpulab's runs handed to a standby runner (warm path): {warm} of {args.n}; "
          f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if lags[0]:
        kernel, first = lags
        print(f"\ntrigger lag over {len(kernel)} cron slots (negative: ready before the slot, thanks to prewarm)")
        print(f"  slot -> kernel ready:  p50 {statistics.median(kernel):+.3f} s  (all: {', '.join(f'{x:+.2f}' for x in kernel)})")
        print(f"  slot -> first cell:    p50 {statistics.median(first):+.3f} s  (all: {', '.join(f'{x:+.2f}' for x in first)})")
        print("  target: p50 under 0.5 s")


if __name__ == "__main__":
    main()
