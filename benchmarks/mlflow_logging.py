"""MLflow logging through gpulab's authenticated path versus a direct local MLflow server.

One run measures, with the real `mlflow` client (MlflowClient, one run per target):
- `log_metric`: N sequential calls (default 500) -> calls per second, and the per-call
  latency (p50/p90: a p50 of 40 ms or more is the Nagle/delayed-ACK stall, mlflow#5269);
- `log_batch` of 1,000 metrics: B sequential batches (default 20) -> batches per second.

Targets, all on this machine, each with a fresh SQLite store in WAL mode (what gpulab uses):
- gpulab (internal): a `gpulab up` hub's MLflow service at the MLFLOW_TRACKING_URI user
  servers get (the service's loopback address), with a hub token: every call is
  authenticated and checked by MLflow's permission model;
- gpulab (via proxy): the same service through the hub's public proxy (traefik);
- direct: stock `mlflow server` with no authentication, with its default 4 workers and
  with `--workers 1`.

After the load it counts each server's processes and their memory (RSS, and PSS, which
splits shared pages fairly). Ratios are gpulab / direct; the target is at least 0.9.

Run: `.venv/bin/python benchmarks/mlflow_logging.py [-n 500] [-b 20]`
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.hub import prepare_hub, wait_for  # noqa: E402
from tests.support.ports import free_port_block  # noqa: E402

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
BIN = Path(sys.executable).parent


def wal_sqlite(path: Path) -> str:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    return f"sqlite:///{path}"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_stock(workdir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    folder = workdir / f"stock-{workers}"
    folder.mkdir()
    port = free_port_block(1)
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--backend-store-uri", wal_sqlite(folder / "mlflow.sqlite"), "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, stdout=open(folder / "log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(url + "/health"), 120, f"mlflow server --workers {workers}", interval=0.2)
    return process, url


def measure(url: str, token: str | None, experiment: str, calls: int, batches: int) -> dict:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    client = MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run_id = client.create_run(experiment_id).info.run_id
    for step in range(30):  # warm up: connections, caches, the run's first rows
        client.log_metric(run_id, "warmup", step, step=step)
    latencies = []
    started = time.perf_counter()
    for step in range(calls):
        before = time.perf_counter()
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        latencies.append(time.perf_counter() - before)
    metric_rate = calls / (time.perf_counter() - started)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for batch in range(batches):
        client.log_batch(run_id, metrics=[Metric(f"m{i % 50}", float(i), now, batch * 1000 + i) for i in range(1000)])
    batch_rate = batches / (time.perf_counter() - started)
    latencies.sort()
    return {"metric_rate": metric_rate, "batch_rate": batch_rate,
            "p50_ms": 1000 * latencies[len(latencies) // 2], "p90_ms": 1000 * latencies[int(len(latencies) * 0.9)]}


def footprint(pid: int) -> tuple[int, float, float]:
    """Processes in the tree of `pid`, their RSS and PSS in MiB."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss = pss = 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += info.pss
    return len(processes), rss / 2**20, pss / 2**20


def gpulab_service_pid(hub) -> int:
    for process in psutil.Process(hub.process.pid).children(recursive=True):
        if "gpulab.extensions.mlflow" in " ".join(process.cmdline()):
            return process.pid
    raise RuntimeError("the MLflow service is not running")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--calls", type=int, default=500, help="log_metric calls per target")
    parser.add_argument("-b", "--batches", type=int, default=20, help="log_batch calls (1,000 metrics each) per target")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="gpulab-bench-mlflow-"))
    hub = prepare_hub(workdir / "gpulab", {"hub": {"log_level": "INFO"}})
    stock: list[tuple[str, subprocess.Popen, str]] = []
    results: dict[str, dict] = {}
    sizes: dict[str, tuple] = {}
    try:
        hub.start()
        wal_sqlite(hub.data_dir / "mlflow" / "mlflow.sqlite")  # already WAL: gpulab switches it at start
        hub.api.request("POST", "hub/api/users/bench")
        token = hub.user_token("bench")
        internal = f"http://127.0.0.1:{hub.ports['hub'] + 2}/services/mlflow"
        results["gpulab (internal)"] = measure(internal, token, "Default (bench)", args.calls, args.batches)
        results["gpulab (via proxy)"] = measure(hub.url + "services/mlflow", token, "Default (bench)", args.calls, args.batches)
        sizes["gpulab MLflow service"] = footprint(gpulab_service_pid(hub))
        for workers in (4, 1):
            process, url = start_stock(workdir, workers)
            name = f"direct, {workers} worker{'s' if workers > 1 else ''}"
            stock.append((name, process, url))
            results[name] = measure(url, None, "bench", args.calls, args.batches)
            sizes[f"mlflow server --workers {workers}"] = footprint(process.pid)
    finally:
        for _, process, _ in stock:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        hub.stop()

    print(f"\nMLflow logging, {args.calls} log_metric calls and {args.batches} log_batch(1,000 metrics) per target\n")
    print(f"{'target':<22} {'log_metric/s':>13} {'p50 ms':>8} {'p90 ms':>8} {'log_batch/s':>12} {'metrics/s':>10}")
    for name, r in results.items():
        print(f"{name:<22} {r['metric_rate']:>13.1f} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} "
              f"{r['batch_rate']:>12.2f} {r['batch_rate'] * 1000:>10.0f}")
    print("\nratios (gpulab / direct; target >= 0.9)")
    for ours in ("gpulab (internal)", "gpulab (via proxy)"):
        for direct in [name for name, _, _ in stock]:
            a, b = results[ours], results[direct]
            print(f"  {ours:<20} vs {direct:<18} log_metric {a['metric_rate'] / b['metric_rate']:5.2f}   "
                  f"log_batch {a['batch_rate'] / b['batch_rate']:5.2f}")
    stalled = [name for name, r in results.items() if r["p50_ms"] >= 40]
    print("\ndelayed-ACK stall (p50 >= 40 ms): " + (", ".join(stalled) if stalled else "none"))
    print("\nprocesses and memory after the load")
    for name, (count, rss, pss) in sizes.items():
        print(f"  {name:<28} {count:>3} processes   RSS {rss:7.0f} MiB   PSS {pss:7.0f} MiB")
    print(f"\n(work files in {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
