"""The docker backend end to end: a real hub, Podman's Docker API, servers in containers from the
`cpu` image built from the committed Dockerfiles (the `container_engine` fixture).

Checked: the server runs in a container of the catalog's image, as the user's own system account
(not the image's UID 1000), with their home bind-mounted at the same path and what they write
there owned by that account on the host; the profile's CPU and memory limits reach the engine
(the container's inspect output); a CPU profile gets no device and sees no GPU; a kernel runs in
the image's Python; MLflow logs from inside; TensorBoard started in the container answers
through the hub; stopping the server removes the container.

What this does not cover: a real GPU (there is none here; the device requests a GPU profile makes
are unit-tested against literal dicts in tests/unit/spawner/backends/docker/test_docker_backend.py), Docker Engine itself
(Podman serves the same API). SSH into a container, project folders, and scheduled runs in
containers (also made from JupyterLab's scheduler in a container) have their own modules
(test_container_ssh.py, test_container_projects.py, test_container_runs.py).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from gpulab.hub_config.client import ClientError
from gpulab.images.catalog import load_catalog
from gpulab.spawner.accounts import account_name
from tests.support.declared_gpus import declared_inventory
from tests.support.hub import GPULAB
from tests.support.kernels import run_in_kernel


pytestmark = pytest.mark.root

CPU_IMAGE = next(e for e in load_catalog(None) if e.id == "cpu").image
REPO = Path(__file__).resolve().parents[5]
PROFILES = [{"id": "small", "display_name": "Small CPU", "default": True,
             "cpu": {"limit": 1.5, "guarantee": 0.5}, "memory": {"limit": "1Gi", "guarantee": "512Mi"}},
            {"id": "gpu-1", "display_name": "1 GPU", "gpu": {"count": 1}}]
COMPARED = ("Image", "User", "WorkingDir", "Memory", "MemoryReservation", "CpuQuota", "CpuPeriod", "CpuShares",
            "NetworkMode", "Binds", "DeviceRequests", "Devices", "GroupAdd")

IN_SERVER = """
import json, os, sys
import mlflow
mlflow.set_experiment("in-a-container")
with mlflow.start_run() as run:
    mlflow.log_metric("loss", 0.25, step=1)
logged = mlflow.get_run(run.info.run_id).data.metrics
open(os.path.join(os.environ["HOME"], "made-in-container.txt"), "w").write("hello")
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "home": os.environ["HOME"], "python": sys.executable,
                  "pid1": open("/proc/1/comm").read().strip(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES"), "metrics": logged,
                  "image": os.environ.get("JUPYTER_IMAGE_SPEC")}))
"""


def catalog(folder: Path) -> Path:
    """The real cpu environment, and a GPU environment that is the same image (no CUDA image is
    built in the tests): enough to make a GPU profile claim a declared GPU and ask the engine."""
    path = folder / "catalog.yaml"
    path.write_text("""
registry: ghcr.io/gpulab
environments:
  - {id: cpu, display_name: Python (CPU), description: d, image: cpu, tag: cpu-python-3.12, gpu: false,
     python: "3.11", approx_size_gb: 2, local_python: ""}
  - {id: cuda-standin, display_name: CUDA stand-in, description: d, image: cpu, tag: cpu-python-3.12, gpu: true,
     cuda: "12.8", min_driver: "570.26", python: "3.11", approx_size_gb: 2, local_python: ""}
""")
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def hub(module_hub_factory, container_engine):
    # The culler imports the inventory as its own account: not from pytest's private tmp_path.
    modules = Path(tempfile.mkdtemp(prefix="gpus-", dir=module_hub_factory.root.parent))
    modules.chmod(0o755)
    inventory = declared_inventory(modules, gpus=1)
    return module_hub_factory.start({
        "spawner": {"backend": "docker", "docker": {"host": container_engine.url},
                    "local": {"gpu_inventory": inventory}},
        "profiles": PROFILES,
        "environments": {"catalog": str(catalog(modules))},
        "mlflow": {"cache_seconds": 1},
    }, extra_env={"PYTHONPATH": f"{REPO}{os.pathsep}{modules}"})


@pytest.fixture(scope="module")
def engine(container_engine):
    client = container_engine.client()
    yield client
    client.close()


def test_a_server_runs_in_the_cpu_image_as_the_users_account(hub, engine, container_engine, account_prefix,
                                                             homes_root):
    hub.create_user("alice")
    hub.spawn("alice", timeout=180)
    account = account_name("alice", account_prefix)
    entry = pwd.getpwnam(account)
    container = engine.containers.get(f"gpulab-{account}")
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert config["Image"].endswith(CPU_IMAGE.split("/", 1)[1]) or config["Image"] == CPU_IMAGE
    assert config["User"] == f"{entry.pw_uid}:{entry.pw_gid}"
    home = str(homes_root / account)
    assert any(bind.startswith(f"{home}:{home}") for bind in host["Binds"]), host["Binds"]
    assert host["NetworkMode"] == "host"
    assert host["Memory"] == 2**30 and host["MemoryReservation"] == 512 * 2**20
    assert host["CpuQuota"] == 150_000 and host["CpuPeriod"] == 100_000 and host["CpuShares"] == 512
    assert not host.get("DeviceRequests") and not host.get("Devices")

    token = hub.user_token("alice")
    status = requests.get(f"{hub.url}user/alice/api/status", headers={"Authorization": f"token {token}"}, timeout=30)
    assert status.status_code == 200
    seen = json.loads(run_in_kernel(hub, "alice", IN_SERVER, token, timeout=180).strip().splitlines()[-1])
    assert seen["uid"] == entry.pw_uid and seen["gid"] == entry.pw_gid
    assert seen["home"] == home
    assert seen["python"].startswith("/opt/gpulab/env/")  # the image's Python, not the hub's
    assert seen["pid1"] == "tini"
    assert seen["cuda"] == "" and seen["nvidia"] == "void"
    assert seen["metrics"] == {"loss": 0.25}
    assert seen["image"] == CPU_IMAGE
    made = os.stat(os.path.join(home, "made-in-container.txt"))
    assert (made.st_uid, made.st_gid) == (entry.pw_uid, entry.pw_gid)

    ours = inspected(container.attrs)
    # By hand, an operator passes the account's other groups too (the test's accounts may be in
    # other modules' project groups by now)
    groups = [str(g) for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid]
    stock = stock_dockerspawner_container(container_engine.url, {
        "image": CPU_IMAGE, "mem_limit": "1G", "cpu_limit": 1.5, "network_name": "host", "use_internal_ip": True,
        "volumes": {home: {"bind": home, "mode": "rw"}},
        "extra_host_config": {"mem_reservation": "512M", "cpu_shares": 512, **({"group_add": groups} if groups else {})},
        "extra_create_kwargs": {"user": f"{entry.pw_uid}:{entry.pw_gid}", "working_dir": home},
    })
    assert ours == stock

    hub.stop_server("alice")
    assert not engine.containers.list(all=True, filters={"name": f"gpulab-{account}"})


WRITE_EVENTS = """
import time
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
writer = EventFileWriter("runs/in-a-container")
value = summary_pb2.Summary.Value(tag="loss", simple_value=0.5)
writer.add_event(event_pb2.Event(wall_time=time.time(), step=1, summary=summary_pb2.Summary(value=[value])))
writer.close()
print("written")
"""


def test_tensorboard_runs_inside_the_container_behind_the_hub(hub):
    hub.create_user("tina")
    hub.spawn("tina", timeout=180)
    token = hub.user_token("tina")
    assert "written" in run_in_kernel(hub, "tina", WRITE_EVENTS, token, timeout=180)
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    opened = session.get(f"{hub.url}user/tina/tensorboard/open", params={"logdir": "runs"}, timeout=120)
    assert opened.status_code == 200, opened.text[-500:]
    base = re.match(r"^(.*/tensorboard/[0-9a-f]+/)", opened.url).group(1)
    runs = session.get(base + "data/runs", timeout=60)
    assert runs.status_code == 200 and runs.json() == ["in-a-container"]
    hub.stop_server("tina")


def test_a_gpu_spawn_fails_clearly_when_the_engine_drops_the_device_request(hub, engine, account_prefix):
    """The declared GPU is claimed from the ledger and asked for by UUID; Podman 4's Docker API
    drops device requests without an error, so the spawn must fail naming that, remove the
    container and give the GPU back (the second try meets the same refusal, not "all in use")."""
    hub.create_user("gwen")
    refusal = "The container engine ignored the request for GPUs GPU-00000000-test"
    counts = []
    for _ in range(2):
        with pytest.raises((ClientError, RuntimeError)):
            hub.spawn("gwen", options={"profile": "gpu-1", "environment": "cuda-standin"}, timeout=120)
        log = hub.log_path.read_text()
        counts.append(log.count(refusal))
        assert "all are in use" not in log
        hub.stop_server("gwen")
    assert 0 < counts[0] < counts[1]  # the second try reached the engine again: the GPU was given back
    assert not engine.containers.list(all=True, filters={"name": f"gpulab-{account_name('gwen', account_prefix)}"})


def inspected(attrs: dict) -> dict:
    merged = {**attrs["HostConfig"], **{k: attrs["Config"][k] for k in ("Image", "User", "WorkingDir")}}
    return {key: merged.get(key) or None for key in COMPARED}


def stock_dockerspawner_container(url: str, config: dict) -> dict:
    """Create (not start) the container a stock DockerSpawner makes from `config`; its inspect output."""
    import asyncio
    from types import SimpleNamespace

    from dockerspawner import DockerSpawner
    from jupyterhub.objects import Hub

    user = SimpleNamespace(name="stock", url="/user/stock/", id=1, escaped_name="stock", server=None,
                           spawners={}, settings={})
    spawner = DockerSpawner(user=user, hub=Hub(), client_kwargs={"base_url": url}, prefix="gpulab-stock", **config)

    async def create():
        created = await spawner.create_object()
        try:
            return inspected(await spawner.docker("inspect_container", created["Id"]))
        finally:
            await spawner.docker("remove_container", created["Id"], force=True)

    return asyncio.run(create())


def test_gpulab_up_says_how_to_get_an_engine_when_none_answers(hub_factory, tmp_path):
    missing = tmp_path / "no-engine.sock"
    hub = hub_factory.prepare({"spawner": {"backend": "docker", "docker": {"host": f"unix://{missing}"}}})
    result = subprocess.run([GPULAB, "up", "--config", str(hub.settings_file)], cwd=hub.workdir,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"gpulab: not starting: spawner.backend is docker, but no container engine answers at unix://{missing}" \
        in result.stderr
    assert "apt-get install podman" in result.stderr and "docs.docker.com/engine/install" in result.stderr
