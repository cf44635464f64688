"""Spawn page render time with live GPU availability, through the real hub.

For 1, 100 and 1,000 registered users on a machine with 64 GPUs (40 of them held in the
ledger), a signed-in user GETs /hub/spawn (gpulab's form: profiles visible to them, live
availability, quota reasons computed from group budgets, environments per profile) and,
as the reference, /hub/home (JupyterHub's own page, no gpulab code) in the same run.
Prints median and p99 of each and the ratio. Target: spawn page p99 under 50 ms at 1,000 users.

Run: `.venv/bin/python benchmarks/spawn_form.py [--requests 200]` (as root; it creates system
accounts only if a server is started, which it does not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpulab.compute.ledger import GpuClaim  # noqa: E402
from gpulab.db import make_engine, make_session_factory  # noqa: E402
from tests.support.gpu_hub import prepare_gpu_hub
from tests.support.hub import HubFactory  # noqa: E402
from tests.support.sessions import signed_in_user  # noqa: E402


PROFILES = [
    {"id": "cpu", "display_name": "CPU", "default": True, "cpu": {"limit": 4}, "memory": {"limit": "16G"}},
    {"id": "gpu-1", "display_name": "1 GPU", "gpu": {"count": 1}, "allowed_groups": ["ml"]},
    {"id": "gpu-4", "display_name": "4 GPUs", "gpu": {"count": 4}, "allowed_groups": ["ml"]},
    {"id": "gpu-8", "display_name": "8 A100", "gpu": {"count": 8, "models": ["A100"]}, "allowed_groups": ["leads"]},
    {"id": "mig", "display_name": "MIG slice", "gpu": {"count": 1, "mig_profile": "1g.10gb"}},
]
QUOTAS = {"default": {"max_gpus": 8, "max_servers": 3}, "groups": {"ml": {"max_gpus": 48}, "leads": {"max_gpus": 16}}}


def hold_gpus(hub, count: int) -> None:
    """Claims straight into the ledger, as if `count` GPUs were held by running servers."""
    sessions = make_session_factory(make_engine(f"sqlite:///{hub.data_dir / 'state' / 'gpulab.sqlite'}"))
    with sessions.begin() as session:
        for i in range(count):
            session.add(GpuClaim(device_uuid=f"GPU-{i:08d}-test", claim_id=f"bench{i}", owner=f"user{i % 50}",
                                 purpose=f"server:user{i % 50}/", holder_pid=os.getpid(), holder_start_ticks=None,
                                 claimed_at=datetime.now(timezone.utc)))


def timed(session, url: str, count: int) -> list[float]:
    session.get(url).raise_for_status()  # warm up
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url)
        durations.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return durations


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def measure(users: int, requests: int, root: Path) -> dict:
    factory = HubFactory(root / f"users-{users}", {"hub": {"log_level": "WARN"}})
    (root / f"users-{users}").mkdir()
    hub = prepare_gpu_hub(factory, root / f"users-{users}", gpus=64, migs=0, quotas=QUOTAS, profiles=PROFILES,
                          name="bench")
    hub.start()
    try:
        names = [f"user{i}" for i in range(users)]
        hub.api.request("POST", "hub/api/groups/ml", {"users": []})
        hub.api.request("POST", "hub/api/groups/leads", {"users": []})
        for start in range(0, users, 100):
            batch = names[start:start + 100]
            hub.api.request("POST", "hub/api/users", {"usernames": batch})
            hub.api.request("POST", "hub/api/groups/ml/users", {"users": batch})
        hold_gpus(hub, 40)
        session = signed_in_user(hub, "reader", "gpu-admin")
        hub.api.request("POST", "hub/api/groups/ml/users", {"users": ["reader"]})
        assert "24 of 64" in session.get(hub.url + "hub/spawn/reader").text
        return {"spawn": timed(session, hub.url + "hub/spawn/reader", requests),
                "home": timed(session, hub.url + "hub/home", requests)}
    finally:
        factory.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="GETs per page and user count (default 200)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-form-", dir="/tmp") as tmp:
        for users in (1, 100, 1000):
            result = measure(users, args.requests, Path(tmp))
            rows.append((users, result))
    print(f"\nspawn page with live availability, 64 GPUs (40 held), {args.requests} GETs each\n")
    print(f"{'users':>6} {'spawn median ms':>16} {'spawn p99 ms':>13} {'home median ms':>15} {'home p99 ms':>12} "
          f"{'spawn/home (median)':>20}")
    for users, result in rows:
        spawn, home = result["spawn"], result["home"]
        print(f"{users:>6} {statistics.median(spawn):16.1f} {p99(spawn):13.1f} {statistics.median(home):15.1f} "
              f"{p99(home):12.1f} {statistics.median(spawn) / statistics.median(home):20.2f}")
    print("\ntarget: spawn page p99 under 50 ms at 1,000 users")


if __name__ == "__main__":
    main()
