"""Spawn latency: from the spawn request to the server answering through the proxy.

N sequential spawns (default 10) of one user's server, each timed from `POST
/hub/api/users/NAME/server` until `GET /user/NAME/api/status` through the public proxy
returns 200 (polled every 10 ms), then stopped. Three hubs run in the same process, one
after the other, on this machine:

- gpulab: `gpulab up` (local backend, system account per user as root, traefik), warm start
  (the default: servers forked from a zygote that imported the server once; the first spawn
  also starts the zygote)
- gpulab with `spawner.local.warm_start: false` (each server a new process), unless `--no-cold`
- stock JupyterHub + LocalProcessSpawner + traefik (the same proxy as gpulab)
- stock JupyterHub + LocalProcessSpawner + configurable-http-proxy (JupyterHub's default
  proxy; skipped when `configurable-http-proxy` is not on PATH)

With `--docker` (as root, Podman installed: ./test.sh does), two more on the same engine and
the same `cpu` image (built from images/ as the tests build it, then cached):

- gpulab: the docker backend (a container as the user's account, home mounted, host network)
- stock JupyterHub + DockerSpawner configured by hand as its documentation shows (the
  engine's bridge network, the port published on 127.0.0.1, the hub reached at the bridge's
  gateway), with traefik

Run: `.venv/bin/python benchmarks/spawn_latency.py [-n 10] [--no-cold] [--docker]` (as root for per-user
accounts). It prints each hub's median, min and max, the ratios against stock JupyterHub with the
same proxy, and the load average before and after (a busy machine slows every row).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpulab.hub_config.client import ClientError, HubClient  # noqa: E402
from gpulab.hub_config.services.service_account import remove_service_account, service_account_name  # noqa: E402
from gpulab.spawner.accounts import MANAGED_MARKER, remove_account  # noqa: E402
from tests.support.hub import ADMIN_TOKEN, ADMIN_TOKEN_CONFIG, prepare_hub, wait_for  # noqa: E402
from tests.support.ports import free_port_block  # noqa: E402

BIN = Path(sys.executable).parent
WARM = "gpulab (local backend, traefik, warm start)"
COLD = "gpulab (local backend, traefik, warm_start: false)"
STOCK = "JupyterHub LocalProcessSpawner (traefik)"


def answering(url: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"token {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:  # refused, reset, or no answer within 5 s (a busy machine): not answering yet
        return False


def time_spawns(api: HubClient, name: str, count: int) -> list[float]:
    api.request("POST", f"hub/api/users/{name}")
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        api.request("POST", f"hub/api/users/{name}/server")
        wait_for(lambda: answering(f"{api.url}user/{name}/api/status"), 120, "the server", interval=0.01)
        durations.append(time.perf_counter() - started)
        api.request("DELETE", f"hub/api/users/{name}/server")
        wait_for(lambda: api.request("GET", f"hub/api/users/{name}")["servers"] == {}, 60, "the stop")
    return durations


def gpulab_hub(workdir: Path, prefix: str, spawner: dict | None = None, name: str = "gpulab", warm: bool = True):
    hub = prepare_hub(workdir / name, {"hub": {"log_level": "INFO"}, "spawner": {**(spawner or {}), "local": {
        "account_prefix": prefix, "home_root": str(workdir / "homes"), "warm_start": warm}}})
    return hub.start(), hub.stop


STOCK_DOCKERSPAWNER = """
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.client_kwargs = {{"base_url": "{engine}"}}
c.DockerSpawner.image = "{image}"
c.DockerSpawner.remove = True
c.DockerSpawner.cmd = None
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = "{gateway}"
"""


def docker_rows(workdir: Path, prefix: str, count: int, stock_user: str) -> list:
    from tests.support.containers import PodmanService, build_specs, ensure_images

    ensure_images(["cpu"])
    image = build_specs()["cpu"].reference
    service = PodmanService(workdir / "podman").start()
    rows = []
    try:
        hub, stop = gpulab_hub(workdir, prefix, {"backend": "docker", "docker": {"host": service.url}}, "gpulab-docker")
        try:
            rows.append(("gpulab (docker backend, traefik)", time_spawns(hub.api, "bench", count)))
        finally:
            stop()
        client = service.client()
        gateway = client.networks.get("podman").attrs["IPAM"]["Config"][0]["Gateway"]
        client.close()
        extra = STOCK_DOCKERSPAWNER.format(engine=service.url, image=image, gateway=gateway)
        api, stop, _ = stock_hub(workdir / "stock-docker", "traefik", extra)
        try:
            rows.append(("JupyterHub DockerSpawner (traefik)", time_spawns(api, stock_user, count)))
        finally:
            stop()
    finally:
        service.stop()
    return rows


STOCK_CONFIG = """
c.JupyterHub.bind_url = "http://127.0.0.1:{public}/"
c.JupyterHub.hub_port = {hub}
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.JupyterHub.log_level = "INFO"
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = ["{bin}/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.JupyterHub.services = []
c.JupyterHub.load_roles = []
{proxy}
"""
TRAEFIK = """
c.JupyterHub.proxy_class = "traefik_file"
c.TraefikFileProviderProxy.should_start = True
c.TraefikFileProviderProxy.traefik_api_url = "http://127.0.0.1:{api}"
c.TraefikFileProviderProxy.static_config_file = "{workdir}/traefik.toml"
c.TraefikFileProviderProxy.dynamic_config_file = "{workdir}/rules.toml"
"""
CHP = """
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.pid_file = "{workdir}/chp.pid"
"""


def stock_hub(workdir: Path, proxy: str, extra_config: str = ""):
    """A stock JupyterHub on fresh ports, its start-up complete: (api, stop, start again on the same ports and
    files)."""
    workdir.mkdir(parents=True)
    base = free_port_block(4)
    ports = {"public": base, "api": base + 1, "hub": base + 2}
    proxy_config = (TRAEFIK if proxy == "traefik" else CHP).format(workdir=workdir, **ports)
    config = STOCK_CONFIG.format(workdir=workdir, bin=BIN, proxy=proxy_config, **ports) + ADMIN_TOKEN_CONFIG
    (workdir / "jupyterhub_config.py").write_text(config + extra_config)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    api = HubClient(f"http://127.0.0.1:{ports['public']}/", ADMIN_TOKEN)
    processes = []

    def up():
        try:
            return api.request("GET", "hub/api/") is not None
        except ClientError:
            return False

    def start(complete: bool = False):
        """Start the hub; wait until its API answers through the proxy and, with `complete`, until it logs
        "JupyterHub is now running" (start-up complete), as gpulab's hub is waited for (RunningHub.start).
        Until then JupyterHub's start() is still confirming its routes with the proxy, and a hub kept
        busy meanwhile (50 users at once) fails that check after the proxy's check_route_timeout and exits."""
        path = workdir / "hub.log"
        offset = path.stat().st_size if path.exists() else 0  # the log is appended to at each start
        log = open(path, "ab")
        processes.append(subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(workdir / "jupyterhub_config.py")],
                                          cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True))

        def ready() -> bool:
            if processes[-1].poll() is not None:
                raise RuntimeError(f"stock JupyterHub exited with {processes[-1].returncode} while starting:\n"
                                   + path.read_text(errors="replace")[-3000:])
            if complete:
                with open(path, "rb") as text:
                    text.seek(offset)
                    if b"JupyterHub is now running" not in text.read():
                        return False
            return up()

        try:
            wait_for(ready, 60, f"stock JupyterHub ({proxy})")
        except TimeoutError:
            processes[-1].kill()
            raise RuntimeError(path.read_text(errors="replace")[-3000:]) from None

    def stop():
        processes[-1].send_signal(signal.SIGTERM)
        processes[-1].wait(30)

    start(complete=True)
    return api, stop, start  # start() again returns as soon as the API answers (stop_restart times that)


def system_user_for_stock(name: str, home_root: Path) -> None:
    """LocalProcessSpawner needs a system account named like the hub user."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--home-dir", str(home_root / name), "--comment", MANAGED_MARKER,
                        "--user-group", name], check=True)


def remove_benchmark_accounts(prefix: str) -> None:
    """The accounts a benchmark made (named with its `prefix`), their processes killed first, and
    the accounts gpulab's services ran as (named apart from the prefix: "s12-" gives "s12_svc-mlflow")."""
    service_stem = service_account_name(prefix, "x")[:-1]
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix):
            subprocess.run(["pkill", "-KILL", "-u", entry.pw_name], capture_output=True)
            remove_account(entry.pw_name)
        elif entry.pw_name.startswith(service_stem):
            subprocess.run(["pkill", "-KILL", "-u", entry.pw_name], capture_output=True)
            remove_service_account(entry.pw_name)  # only an account marked as a gpulab service's


def end_processes_in(folder: Path) -> None:
    """Kill what still runs from a benchmark's folder: a proxy that a stock hub which died left behind."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder) in cmdline.read_text():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except OSError:  # it ended meanwhile
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10, help="spawns per hub (default 10)")
    parser.add_argument("--docker", action="store_true", help="also the docker backend and stock DockerSpawner")
    parser.add_argument("--no-cold", action="store_true", help="leave out gpulab with warm_start: false")
    args = parser.parse_args()
    load_before = os.getloadavg()
    prefix = f"b{os.getpid() % 10000}-"
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        (workdir / "homes").mkdir(mode=0o755)
        root = os.geteuid() == 0
        stock_user = f"{prefix}stock" if root else pwd.getpwuid(os.getuid()).pw_name
        try:
            hub, stop = gpulab_hub(workdir, prefix)
            try:
                rows.append((WARM, time_spawns(hub.api, "bench", args.n)))
            finally:
                stop()
            if not args.no_cold:
                hub, stop = gpulab_hub(workdir, prefix, name="gpulab-cold", warm=False)
                try:
                    rows.append((COLD, time_spawns(hub.api, "bench", args.n)))
                finally:
                    stop()
            if root:
                system_user_for_stock(stock_user, workdir / "homes")
            proxies = ["traefik"] + (["configurable-http-proxy"] if shutil.which("configurable-http-proxy") else [])
            for proxy in proxies:
                api, stop, _ = stock_hub(workdir / f"stock-{proxy}", proxy)
                try:
                    rows.append((f"JupyterHub LocalProcessSpawner ({proxy})", time_spawns(api, stock_user, args.n)))
                finally:
                    stop()
            if args.docker:
                (workdir / "podman").mkdir()
                rows += docker_rows(workdir, prefix, args.n, stock_user)
        finally:
            remove_benchmark_accounts(prefix)

    reference = statistics.median(rows[0][1])
    print(f"\nspawn request -> server answers through the proxy, {args.n} sequential spawns each\n")
    print(f"{'hub':58} {'median s':>9} {'min s':>7} {'max s':>7} {'gpulab median / this':>21}")
    for label, durations in rows:
        median = statistics.median(durations)
        print(f"{label:58} {median:9.3f} {min(durations):7.3f} {max(durations):7.3f} {reference / median:21.2f}")
    print("\n(a ratio above 1 means gpulab's spawn took longer than that hub's)")
    medians = {label: statistics.median(durations) for label, durations in rows}
    stock = medians.get(STOCK)
    if stock:
        for label in (WARM, COLD):
            if label in medians:
                print(f"{label} / stock LocalProcessSpawner (traefik): {medians[label] / stock:.2f} "
                      f"({stock / medians[label]:.1f}x faster)")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if "JupyterHub DockerSpawner (traefik)" in medians:
        ratio = medians["gpulab (docker backend, traefik)"] / medians["JupyterHub DockerSpawner (traefik)"]
        print(f"gpulab docker backend / stock DockerSpawner, same engine and image: {ratio:.2f}")


if __name__ == "__main__":
    main()
