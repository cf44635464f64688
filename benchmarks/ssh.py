"""SSH through gpulab: command latency and file-copy throughput, against a plain local copy.

One run starts a hub (`gpulab up`, its SSH gateway, one user server with the in-server
endpoint) on random ports with a temp data dir, registers a fresh key, then measures:

- `ssh -p PORT user@127.0.0.1 true` against the running server: N runs (default 20) after
  one warm-up, each a new OpenSSH connection (sign-in, hub access check, WebSocket to the
  server, SSH inside it, the command, exit status); p50, min, max.
- scp of a SIZE MB file (default 200, random bytes) into the server and back, through the
  gateway, against `cp` of the same file on this machine (the floor: same disk, no network,
  no encryption). The copies are checked with sha256.

Run: `.venv/bin/python benchmarks/ssh.py [-n 20] [--size-mb 200]` (as root for per-user accounts).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpulab.hub_config.client import HubClient  # noqa: E402
from gpulab.spawner.accounts import MANAGED_MARKER, remove_account  # noqa: E402
from tests.support.hub import prepare_hub  # noqa: E402
from tests.support.ssh import OpenSSH, known_hosts, make_key  # noqa: E402

USER = "bench"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="ssh runs (default 20)")
    parser.add_argument("--size-mb", type=int, default=200, help="size of the copied file in MB (default 200)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gpulab-bench-ssh-", dir="/tmp"))
    work.chmod(0o755)
    prefix = f"b{os.getpid() % 10000}-"
    hub = prepare_hub(work / "hub", {}, {
        "spawner": {"start_timeout": 90, "local": {"account_prefix": prefix, "home_root": str(work / "homes")}},
    })
    hub.settings["hub"]["log_level"] = "INFO"
    ssh_port = hub.ports["ssh"]
    try:
        hub.start()
        hub.create_user(USER)
        key = make_key(work / "keys", USER)
        HubClient(hub.url, hub.user_token(USER)).request(
            "POST", "services/ssh/api/keys", {"public_key": key.with_suffix(".pub").read_text()})
        hub.spawn(USER)
        client = OpenSSH(ssh_port, known_hosts(hub, ssh_port, work / "keys"), key, timeout=600)
        ssh_true = client.ssh_command(USER, "true")

        timed(ssh_true)  # warm-up
        latencies = [timed(ssh_true) for _ in range(args.n)]

        original = work / "payload.bin"
        with open(original, "wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(1_000_000))
        local_copy = work / "homes" / "local-copy.bin"
        (work / "homes").mkdir(exist_ok=True)
        cp_seconds = timed(["cp", str(original), str(local_copy)])
        scp_up = timed(["scp", "-P", str(ssh_port), *client.options(), str(original), f"{USER}@127.0.0.1:payload.bin"])
        back = work / "back.bin"
        scp_down = timed(["scp", "-P", str(ssh_port), *client.options(), f"{USER}@127.0.0.1:payload.bin", str(back)])
        expected = sha256(original)
        remote = subprocess.run(client.ssh_command(USER, "sha256sum payload.bin"), capture_output=True, text=True)
        assert remote.stdout.split()[0] == expected and sha256(back) == expected, "a copy differs"
    finally:
        hub.stop_all_servers() if hub.process and hub.process.poll() is None else None
        hub.stop()
        if os.geteuid() == 0:
            for entry in pwd.getpwall():
                if entry.pw_name.startswith(prefix) and entry.pw_gecos == MANAGED_MARKER:
                    remove_account(entry.pw_name)
        shutil.rmtree(work, ignore_errors=True)

    p50 = statistics.median(latencies)
    size = args.size_mb
    print(f"\n`ssh true` against a running server through gpulab, {args.n} connections after a warm-up\n")
    print(f"{'p50 s':>8} {'min s':>8} {'max s':>8}")
    print(f"{p50:8.3f} {min(latencies):8.3f} {max(latencies):8.3f}")
    print(f"\ncopy of a {size} MB file\n")
    print(f"{'copy':44} {'seconds':>8} {'MB/s':>8} {'time / local cp':>16}")
    for label, seconds in [("local cp (same machine, no network)", cp_seconds),
                           ("scp into the server through gpulab", scp_up),
                           ("scp out of the server through gpulab", scp_down)]:
        print(f"{label:44} {seconds:8.2f} {size / seconds:8.1f} {seconds / cp_seconds:16.1f}")
    print("\n(each scp is a fresh connection: sign-in, access check, WebSocket, SSH inside the server)")


if __name__ == "__main__":
    main()
