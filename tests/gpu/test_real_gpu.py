"""gpulab's GPU paths on a real NVIDIA GPU. Every test here skips where NVML finds no GPU, which
is every CI machine: run them on a machine with a driver and PyTorch (see tests/gpu/run_on_gpu.sh).

Covered, against the real driver: NVML discovery (`NvmlInventory`) against `nvidia-smi`; a claim
from the GPU ledger naming the device that a CUDA program started the way servers and runs are
(`CUDA_VISIBLE_DEVICES` from the claim, as an unprivileged account) then sees, and a CPU
profile's empty list hiding every GPU; the usage sampler's utilisation and memory readings while
a real matrix-product loop runs and after it stops, beside `nvidia-smi`'s at the same moments;
the culler's quiet-GPU judgement on those readings; the claim and its usage interval ending with
the process; a scheduled notebook executed by gpulab's runner code (`execution.execute`, the
part of the runner that drives Papermill) on the claimed GPU as the account, beside bare
`papermill -p` on the same notebook (same injected cell, same output). Not covered: MIG instances unless the GPU is already in MIG mode (gpulab never
changes the mode), a whole hub spawn (JupyterHub's stack is not installed on the GPU machine:
spawns are tested with the emulated NVML in tests/hub), nvdashboard.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from gpulab.compute.inventory import NvmlInventory
from gpulab.compute.ledger import Ledger
from gpulab.compute.processes import start_ticks
from gpulab.compute.profiles import GpuRequest
from gpulab.compute.usage import UsageInterval
from gpulab.compute.usage_sampler import UsageSampler
from gpulab.extensions.culler.decisions import GpuHistory
from gpulab.spawner.cuda import incompatibility
from tests.support.usage_ledger import migrated_sessions

INVENTORY = NvmlInventory()
DEVICES = INVENTORY.devices()
pytestmark = pytest.mark.skipif(not DEVICES, reason="no NVIDIA GPU (NVML found none)")

ACCOUNT = "gpulab-gpu-test"
THRESHOLD = 5  # the culler's default idle threshold, percent

# Matrix products for `busy` seconds, then nothing (memory still held) for `idle` seconds.
LOAD = """
import sys, time, torch
busy, idle = float(sys.argv[1]), float(sys.argv[2])
print(torch.cuda.device_count(), flush=True)
if torch.cuda.device_count():
    print(torch.cuda.get_device_properties(0).uuid, flush=True)
    x = torch.randn(8192, 8192, device="cuda")
    end = time.time() + busy
    while time.time() < end:
        y = x @ x
        torch.cuda.synchronize()
    print("idle", flush=True)
    time.sleep(idle)
"""


def smi(*fields: str) -> list[list[str]]:
    out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                         check=True, capture_output=True, text=True).stdout
    return [[cell.strip() for cell in line.split(",")] for line in out.strip().splitlines()]


def torch_python() -> str:
    for python in (sys.executable, shutil.which("python3") or ""):
        if python and subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    pytest.skip("no Python with PyTorch here")


@pytest.fixture(scope="module")
def account():
    """An unprivileged system account, as servers and runs run under."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a system account")
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ACCOUNT],
                   capture_output=True)
    yield pwd.getpwnam(ACCOUNT)
    subprocess.run(["userdel", ACCOUNT], capture_output=True)


def start_load(python: str, account, devices: str, busy: float, idle: float) -> subprocess.Popen:
    env = {"PATH": os.defpath, "HOME": "/tmp", "CUDA_VISIBLE_DEVICES": devices}
    return subprocess.Popen([python, "-c", LOAD, str(busy), str(idle)], env=env, cwd="/tmp",
                            user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def sessions(tmp_path):
    return migrated_sessions(tmp_path)


def test_nvml_inventory_lists_what_nvidia_smi_lists():
    listed = smi("uuid", "name", "memory.total", "driver_version", "mig.mode.current")
    print("nvidia-smi:", listed)
    print("gpulab:", DEVICES)
    whole = [row for row in listed if row[4] in ("Disabled", "[N/A]", "N/A")]
    assert [(d.uuid, d.model, d.memory_mb, d.driver) for d in DEVICES if not d.is_mig] == \
        [(row[0], row[1], int(row[2]), row[3]) for row in whole]
    if len(whole) < len(listed):  # a GPU in MIG mode: its instances, not the GPU, are listed
        assert any(d.is_mig for d in DEVICES)


def test_the_driver_runs_what_the_cuda_table_says_it_runs():
    """The driver NVML reports, against gpulab's table (spawner/cuda.py): the CUDA that this
    machine's PyTorch was built for runs here, as the table says; what it says of the catalog's
    environments on this driver is printed."""
    python = torch_python()
    driver = DEVICES[0].driver
    probe = "import torch; print(torch.version.cuda, torch.cuda.is_available())"
    cuda, available = subprocess.run([python, "-c", probe], check=True, capture_output=True,
                                     text=True).stdout.split()
    print(f"driver {driver}; PyTorch built for CUDA {cuda}, available: {available}")
    assert available == "True"
    assert incompatibility(cuda, None, driver) is None
    import yaml  # PyYAML: the catalog read as plain data, not through the hub's loader

    catalog = yaml.safe_load((Path(__file__).parents[2] / "images" / "catalog.yaml").read_text())
    for entry in catalog["environments"]:
        verdict = incompatibility(entry.get("cuda"), entry.get("min_driver"), driver)
        print(f"catalog {entry['id']}: CUDA {entry.get('cuda')} -> {verdict or 'runs on this driver'}")


def test_the_claimed_gpu_is_the_one_a_cuda_program_sees_and_a_cpu_profile_sees_none(sessions, account):
    python = torch_python()
    ledger = Ledger(sessions)
    claim = ledger.claim("alice", "server:alice/gpu", GpuRequest(count=1), DEVICES, profile="gpu")
    assert len(claim.devices) == 1
    gpu = start_load(python, account, ",".join(claim.devices), busy=0, idle=0)
    out, err = gpu.communicate(timeout=120)
    assert gpu.returncode == 0, err
    count, uuid = out.split()[:2]
    assert count == "1"
    assert claim.devices[0] == "GPU-" + uuid  # torch prints the UUID without NVML's prefix

    cpu = start_load(python, account, "", busy=0, idle=0)  # a CPU profile's empty list
    out, err = cpu.communicate(timeout=120)
    assert cpu.returncode == 0, err
    assert out.split() == ["0"]


def test_sampler_reads_real_utilisation_and_memory_and_the_culler_tells_busy_from_quiet(sessions, account):
    python = torch_python()
    ledger = Ledger(sessions)
    claim = ledger.claim("alice", "server:alice/gpu", GpuRequest(count=1), DEVICES, profile="gpu")
    uuid = claim.devices[0]
    load = start_load(python, account, uuid, busy=12, idle=12)
    ledger.attach(claim.claim_id, load.pid, start_ticks(load.pid))
    sampler = UsageSampler(sessions, INVENTORY, threshold=THRESHOLD, ledger=ledger)
    history = GpuHistory(keep=timedelta(hours=1))
    assert load.stdout is not None
    assert load.stdout.readline().strip() == "1"
    load.stdout.readline()  # its UUID: the matrix products start now
    index = next(d.index for d in DEVICES if d.uuid == uuid)

    def sample(phase: str) -> tuple[int, int, int, int]:
        held = {h.uuid: h.reading for h in sampler.sample_once()}
        reading = held[uuid]
        percent, used = (int(v) for v in smi("utilization.gpu", "memory.used")[int(index.split(":")[0])])
        history.record(datetime.now(timezone.utc), {uuid: reading.utilization or 0})
        print(f"{phase}: gpulab {reading.utilization}% {reading.memory_used_mb} MiB; "
              f"nvidia-smi {percent}% {used} MiB")
        assert reading.utilization is not None and reading.memory_used_mb is not None
        return reading.utilization, reading.memory_used_mb, percent, used

    def samples(phase: str) -> list[tuple[int, int, int, int]]:
        time.sleep(2)  # NVML's utilisation is an average over its last sampling period
        taken = []
        for _ in range(4):
            taken.append(sample(phase))
            time.sleep(1)
        return taken

    busy = samples("busy")
    assert load.stdout.readline().strip() == "idle"
    quiet_from = datetime.now(timezone.utc)
    idle = samples("idle")

    assert min(u for u, _, _, _ in busy) >= 50 and min(p for _, _, p, _ in busy) >= 50
    assert max(u for u, _, _, _ in idle) <= THRESHOLD and max(p for _, _, p, _ in idle) <= THRESHOLD
    for _, memory, _, smi_memory in busy + idle:
        assert memory >= 512  # the 256 MiB matrix, its product and the CUDA context
        assert abs(memory - smi_memory) <= 64  # the same counter, read a moment apart
    assert history.quiet((uuid,), quiet_from, THRESHOLD)
    assert not history.quiet((uuid,), quiet_from - timedelta(seconds=10), THRESHOLD)

    load.wait(timeout=60)
    assert ledger.live_claims() == []  # the claim ended with its holder
    with sessions() as session:
        (row,) = session.scalars(select(UsageInterval))
        print(f"interval: {row.samples} samples, max {row.utilization_max}%, {row.memory_max_mb} MiB, "
              f"{row.measured_gpu_seconds:.1f} GPU-s measured, {row.idle_gpu_seconds:.1f} idle")
        assert row.ended_at is not None
        assert row.utilization_max >= 50 and 0 < row.idle_gpu_seconds < row.measured_gpu_seconds


# gpulab's runner code without its scheduler: the executed notebook's cells, and the status.
RUN_WITH_GPULAB = """
import json, sys
from pathlib import Path
from gpulab.extensions.scheduler.execution import execute

class Reporter:  # the runner's reporter, minus the scheduler it reports to
    def event(self, **fields): pass
    def _call(self, *args): pass

spec = {"notebook": json.loads(Path(sys.argv[1]).read_text()), "parameters": {"size": 2048}}
status, error, _ = execute(spec, Reporter(), Path(sys.argv[2]), lambda not_before: None)
print(json.dumps({"status": status, "error": error}))
"""

NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "cells": [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "execution_count": None,
         "outputs": [], "source": "size = 64"},
        {"cell_type": "code", "id": "g", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "import torch\nx = torch.ones(size, size, device='cuda')\n"
                   "print(torch.cuda.device_count(), torch.cuda.get_device_properties(0).uuid, float((x @ x).sum()))"},
    ],
}


def cells(path: Path) -> list[tuple[str, str]]:
    notebook = json.loads(path.read_text())
    return [(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]),
             "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                     for o in cell.get("outputs", [])))
            for cell in notebook["cells"]]


def test_a_scheduled_notebook_runs_on_the_claimed_gpu_as_bare_papermill_runs_it(sessions, account, request):
    python = torch_python()
    if subprocess.run([python, "-c", "import papermill, ipykernel"], capture_output=True).returncode:
        pytest.skip("papermill and ipykernel are not installed here")
    claim = Ledger(sessions).claim("alice", "run:1", GpuRequest(count=1), DEVICES, profile="gpu")
    home = Path(tempfile.mkdtemp(prefix="gpulab-gpu-home-", dir="/tmp"))  # pytest's tmp_path is root's alone
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    for folder in (home, home / "gpulab", home / "bare"):
        folder.mkdir(exist_ok=True)
        os.chown(folder, account.pw_uid, account.pw_gid)
    source = home / "input.ipynb"
    source.write_text(json.dumps(NOTEBOOK))
    env = {"PATH": os.defpath, "HOME": str(home), "CUDA_VISIBLE_DEVICES": claim.devices[0],
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}

    def as_account(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, *argv], env=env, cwd=home, user=account.pw_uid, group=account.pw_gid,
                              extra_groups=[], capture_output=True, text=True, timeout=300)

    ours = as_account("-c", RUN_WITH_GPULAB, str(source), str(home / "gpulab"))
    assert ours.returncode == 0, ours.stderr
    assert json.loads(ours.stdout.strip().splitlines()[-1]) == {"status": "COMPLETED", "error": None}
    bare = as_account("-m", "papermill", str(source), str(home / "bare" / "output.ipynb"), "-p", "size", "2048",
                      "--no-progress-bar")
    assert bare.returncode == 0, bare.stderr

    ran, reference = cells(home / "gpulab" / "output.ipynb"), cells(home / "bare" / "output.ipynb")
    print("gpulab:", ran)
    print("papermill:", reference)
    assert ran == reference
    injected, output = ran[1], ran[2][1].split()
    assert injected[0].strip().endswith("size = 2048")
    assert output[0] == "1" and "GPU-" + output[1] == claim.devices[0]
    assert float(output[2]) == 2048.0**3  # ones(2048)² summed
