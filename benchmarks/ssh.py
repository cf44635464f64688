"""SSH through gpulab against Debian's stock sshd on the same machine, as the same account.

One run starts a hub (`gpulab up`, its SSH gateway, one user server with the in-server
endpoint) on random ports with a temp data dir, registers a fresh key, starts
/usr/sbin/sshd on a loopback port (its own host key and config, the same key authorized,
switching to the user server's own system account; root only), then measures both:

- `ssh true`: N runs (default 20) after one warm-up, each a new OpenSSH connection; p50,
  min, max. Through gpulab that is sign-in, hub access check, WebSocket to the server, SSH
  inside it, the command and its exit status.
- scp of a SIZE MB file (default 200, random bytes) into the home and back, and the same
  bytes through `cat` (`ssh host 'cat > f' < file`, `ssh host 'cat f' > copy`); every copy
  is checked with sha256.

Then the gpulab / sshd ratios (throughput: gpulab MB/s over sshd MB/s; goal at least 0.5;
`ssh true` p50 under 300 ms).

Run: `.venv/bin/python benchmarks/ssh.py [-n 20] [--size-mb 200]` as root (as another user
only the gpulab column is measured).
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
from gpulab.spawner.accounts import MANAGED_MARKER, account_name, remove_account  # noqa: E402
from tests.support.hub import prepare_hub  # noqa: E402
from tests.support.ssh import OpenSSH, known_hosts, make_key  # noqa: E402
from tests.support.sshd import start_sshd  # noqa: E402

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


def measure(client: OpenSSH, login: str, runs: int, original: Path, work: Path) -> dict[str, float]:
    """Seconds for each operation against one SSH server; raises if a copy differs."""
    ssh_true = client.ssh_command(login, "true")
    timed(ssh_true)  # warm-up
    latencies = [timed(ssh_true) for _ in range(runs)]
    options = ["-P", str(client.port), *client.options()]
    back = work / f"back-{login}.bin"
    results = {
        "p50": statistics.median(latencies), "min": min(latencies), "max": max(latencies),
        "scp up": timed(["scp", *options, str(original), f"{login}@127.0.0.1:payload.bin"]),
        "scp down": timed(["scp", *options, f"{login}@127.0.0.1:payload.bin", str(back)]),
    }
    expected = sha256(original)
    assert sha256(back) == expected, "scp down differs"
    started = time.perf_counter()
    with open(original, "rb") as source:
        subprocess.run(client.ssh_command(login, "cat > cat-payload.bin"), stdin=source, check=True, capture_output=True)
    results["cat up"] = time.perf_counter() - started
    started = time.perf_counter()
    with open(back, "wb") as copy:
        subprocess.run(client.ssh_command(login, "cat cat-payload.bin"), stdout=copy, check=True)
    results["cat down"] = time.perf_counter() - started
    assert sha256(back) == expected, "cat down differs"
    remote = subprocess.run(client.ssh_command(login, "sha256sum payload.bin cat-payload.bin; rm -f payload.bin cat-payload.bin"),
                            capture_output=True, text=True)
    assert [line.split()[0] for line in remote.stdout.splitlines()] == [expected, expected], "an upload differs"
    back.unlink()
    return results


def report(size: int, runs: int, columns: dict[str, dict[str, float]]) -> None:
    names = list(columns)
    print(f"\n`ssh true`, {runs} connections after a warm-up (seconds)\n")
    print(f"{'':10}" + "".join(f"{name:>10}" for name in names) + ("  gpulab / sshd" if len(names) == 2 else ""))
    for row in ("p50", "min", "max"):
        values = [columns[name][row] for name in names]
        ratio = f"{values[0] / values[1]:15.2f}" if len(values) == 2 else ""
        print(f"{row:10}" + "".join(f"{v:10.3f}" for v in values) + ratio)
    print(f"\n{size} MB copies (MB/s; ratio = gpulab throughput / sshd throughput, goal >= 0.5)\n")
    print(f"{'':10}" + "".join(f"{name:>10}" for name in names) + ("  gpulab / sshd" if len(names) == 2 else ""))
    for row in ("scp up", "scp down", "cat up", "cat down"):
        rates = [size / columns[name][row] for name in names]
        ratio = f"{rates[0] / rates[1]:15.2f}" if len(rates) == 2 else ""
        print(f"{row:10}" + "".join(f"{r:10.1f}" for r in rates) + ratio)
    p50 = columns["gpulab"]["p50"]
    print(f"\ngpulab `ssh true` p50 {p50 * 1000:.0f} ms (goal < 300 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="ssh runs (default 20)")
    parser.add_argument("--size-mb", type=int, default=200, help="size of the copied file in MB (default 200)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gpulab-bench-ssh-", dir="/tmp"))
    work.chmod(0o755)
    prefix = f"b{os.getpid() % 10000}-"
    hub = prepare_hub(work / "hub", {"mlflow": {"enabled": False}}, {
        "spawner": {"start_timeout": 90, "local": {"account_prefix": prefix, "home_root": str(work / "homes")}},
    })
    hub.settings["hub"]["log_level"] = "INFO"
    ssh_port = hub.ports["ssh"]
    sshd = None
    columns: dict[str, dict[str, float]] = {}
    try:
        hub.start()
        hub.create_user(USER)
        key = make_key(work / "keys", USER)
        HubClient(hub.url, hub.user_token(USER)).request(
            "POST", "services/ssh/api/keys", {"public_key": key.with_suffix(".pub").read_text()})
        hub.spawn(USER)
        original = work / "payload.bin"
        with open(original, "wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(1_000_000))
        client = OpenSSH(ssh_port, known_hosts(hub, ssh_port, work / "keys"), key, timeout=600)
        columns["gpulab"] = measure(client, USER, args.n, original, work)
        if os.geteuid() == 0:
            account = account_name(USER, prefix)
            sshd = start_sshd(account, key.with_suffix(".pub"), key)
            sshd.client.timeout = 600
            columns["sshd"] = measure(sshd.client, account, args.n, original, work)
    finally:
        if sshd is not None:
            sshd.stop()
        hub.stop_all_servers() if hub.process and hub.process.poll() is None else None
        hub.stop()
        if os.geteuid() == 0:
            for entry in pwd.getpwall():
                if entry.pw_name.startswith(prefix) and entry.pw_gecos == MANAGED_MARKER:
                    remove_account(entry.pw_name)
        shutil.rmtree(work, ignore_errors=True)
    report(args.size_mb, args.n, columns)


if __name__ == "__main__":
    main()
