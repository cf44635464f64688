"""GPU jobs on one machine: refusals through the claim's quota check, and a two-process job on
two claimed GPUs.

GPUs are declared (tests/support/declared_gpus.py), so CUDA itself is not exercised. torch is
too heavy for this environment: the two-process job runs tests/support/torchrun_standin.py, a
stand-in for `torchrun` (one worker per claimed GPU, torchrun's variables) and for
torch.distributed's all-reduce (over TCP), shipped in the job's snapshot like a user's code.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gpulab.extensions.scheduler.snapshots import pack
from gpulab.hub_config.client import ClientError, HubClient
from tests.support.gpu_hub import make_user, start_gpu_hub
from tests.support.hub import GPULAB, wait_for
from tests.support.ports import free_port_block
from tests.support.scheduler_runs import notebook, run_once, wait_run


STANDIN = Path(__file__).resolve().parents[3] / "support" / "torchrun_standin.py"
TRAIN = """\
import os
from torchrun import all_reduce_sum
rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
device = os.environ["CUDA_VISIBLE_DEVICES"].split(",")[local]
total = all_reduce_sum(rank + 1)
print(f"rank {rank} of {os.environ['WORLD_SIZE']} on {device}: sum {total}", flush=True)
"""
QUOTAS = {"default": {"max_gpus": 1}, "users": {"big": {"max_gpus": 2}, "member": {"max_gpus": 2}},
          "groups": {"tight": {"max_gpus": 1}}}


@pytest.fixture(scope="module")
def hub(module_hub_factory, tmp_path_factory):
    hub = start_gpu_hub(module_hub_factory, tmp_path_factory.mktemp("gpu-jobs"), gpus=2, migs=0, quotas=QUOTAS,
                        name="gpu-jobs")
    for group in ("ml", "tight"):
        hub.api.request("POST", f"hub/api/groups/{group}", {"users": []})
    make_user(hub, "small", ["ml"])
    make_user(hub, "member", ["tight"])
    make_user(hub, "big", ["ml"])
    return hub


def gpulab_as(hub, user: str, cwd: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": hub.user_token(user)}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    return subprocess.run([GPULAB, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_a_job_over_quota_or_budget_is_refused_with_the_reason(hub, tmp_path):
    refused = gpulab_as(hub, "small", tmp_path, "run", "--profile", "gpu-2", "--", "true")
    assert refused.returncode == 2
    assert "refused: over quota: small holds 0 of 1 GPUs allowed and this needs 2 more" in refused.stderr
    member = HubClient(hub.url, hub.user_token("member"))
    with pytest.raises(ClientError) as budget:
        member.request("POST", "services/scheduler/api/jobs", {
            "name": "x", "kind": "command", "command": ["true"], "profile": "gpu-2",
            "snapshot": base64.b64encode(pack(tmp_path)).decode()})
    assert budget.value.status == 403
    assert budget.value.message == "refused: over quota: group tight holds 0 of 1 GPUs allowed and this needs 2 more"
    # The same check holds for notebook runs: one that could never start is not queued to wait forever
    small = HubClient(hub.url, hub.user_token("small"))
    with pytest.raises(ClientError) as notebook_run:
        run_once(small, notebook("1"), profile="gpu-2")
    assert notebook_run.value.status == 403 and "small holds 0 of 1 GPUs allowed" in notebook_run.value.message
    assert member.request("GET", "services/scheduler/api/runs") == []  # nothing was queued
    assert small.request("GET", "services/scheduler/api/runs") == []


def test_a_job_that_fits_its_quota_but_not_now_waits_with_the_reason(hub, tmp_path):
    client = HubClient(hub.url, hub.user_token("big"))
    holding = gpulab_as(hub, "big", tmp_path, "run", "--profile", "gpu-2", "--", "sleep", "4")
    first = holding.stdout.split()[0]
    wait_for(lambda: client.request("GET", f"services/scheduler/api/runs/{first}")["status"] == "RUNNING", 60,
             "the first job to hold both GPUs")
    second = gpulab_as(hub, "big", tmp_path, "run", "--profile", "gpu-1", "--", "true").stdout.split()[0]
    waiting = wait_for(lambda: (r := client.request("GET", f"services/scheduler/api/runs/{second}"))["status"]
                       == "WAITING" and r, 30, "the second job to wait")
    assert "over quota: big holds 2 of 2 GPUs allowed and this needs 1 more" in waiting["message"]
    assert wait_run(client, first)["status"] == "COMPLETED"
    assert wait_run(client, second)["status"] == "COMPLETED"


def test_a_two_process_job_gets_one_claimed_gpu_per_worker(hub, tmp_path):
    shutil.copy(STANDIN, tmp_path / "torchrun.py")
    (tmp_path / "train.py").write_text(TRAIN)
    port = free_port_block(1)
    # No --nproc-per-node: torchrun's default (PET_NPROC_PER_NODE) is the number of claimed GPUs
    result = gpulab_as(hub, "big", tmp_path, "run", "--profile", "gpu-2", "--wait", "--",
                       "python", "torchrun.py", "--master-port", str(port), "train.py")
    assert result.returncode == 0, result.stderr
    run = HubClient(hub.url, hub.user_token("big")).request("GET", f"services/scheduler/api/runs/{result.stdout.split()[0]}")
    assert run["devices"] == ["GPU-00000000-test", "GPU-00000001-test"] and run["exit_code"] == 0
    assert "rank 0 of 2 on GPU-00000000-test: sum 3" in result.stderr
    assert "rank 1 of 2 on GPU-00000001-test: sum 3" in result.stderr
