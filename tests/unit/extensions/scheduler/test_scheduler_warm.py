"""The warm path's pure parts: which runs a standby may take, its bounds, references, the marks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from gpulab.compute.limits import Limits
from gpulab.compute.processes import ProcessRef
from gpulab.spawner.backends.local.runner_process import RunnerLaunch
from gpulab.spawner.backends.local.standby import TOKEN_PLACEHOLDER, HandedRef, StandbyKey, Standbys, parse_ref
from gpulab.extensions.scheduler.run_options import RunOptions
from gpulab.extensions.scheduler.warm import hint_of, kernel_code, kernel_of


ME = ProcessRef.of(os.getpid())


def launch(owner="ann", env=None, image="", limits=Limits()) -> RunnerLaunch:
    return RunnerLaunch("9c5c2d8e-8a0d-4f5e-9d7a-2b9a9f1f4c11", owner, "/envs/a/bin/python",
                        {"CUDA_VISIBLE_DEVICES": ""} if env is None else env, limits, image)


def test_only_cpu_runs_on_one_machine_outside_containers_have_a_standby(tmp_path):
    standbys = Standbys("http://s/runner/", tmp_path)
    assert standbys.key_for(launch(), gpus=False, nodes=1) == StandbyKey("ann", "/envs/a/bin/python", Limits())
    assert standbys.key_for(launch(), gpus=True, nodes=1) is None
    assert standbys.key_for(launch(env={"CUDA_VISIBLE_DEVICES": "GPU-1"}), gpus=False, nodes=1) is None
    assert standbys.key_for(launch(image="cpu:1"), gpus=False, nodes=1) is None
    assert standbys.key_for(launch(), gpus=False, nodes=2) is None


def test_one_standby_per_key_and_a_bound_in_all(tmp_path):
    standbys = Standbys("http://s/runner/", tmp_path, max_standbys=2)
    ann, bob, cy = (StandbyKey(owner, "", Limits()) for owner in ("ann", "bob", "cy"))
    assert standbys.wanted(ann)
    standby, started = standbys.new(ann, {"kernel": "python3"})
    assert started.run_id == standby.id and started.owner == "ann"
    assert started.env["GPULAB_RUN_URL"] == f"http://s/runner/{standby.id}/"  # marked like a run of its id
    assert len(started.env["GPULAB_RUN_TOKEN"]) == len(TOKEN_PLACEHOLDER) == 43
    assert not standbys.wanted(ann) and standbys.wanted(bob)
    standbys.new(bob, {})
    assert not standbys.wanted(cy)  # the bound
    standbys.forget(standby.id)
    assert standbys.wanted(cy)


def test_a_standby_takes_one_run_of_its_owner_and_a_lost_hand_over_gives_the_run_back(tmp_path):
    async def scenario():
        standbys = Standbys("http://s/runner/", tmp_path, idle_seconds=30)
        key = StandbyKey("ann", "", Limits())
        standby, started = standbys.new(key, {})
        token = "t0k"
        standby.token_hash = __import__("hashlib").sha256(token.encode()).hexdigest()
        standbys.started(standby.id, ME)
        assert standbys.idle(key) is None  # not waiting yet (still warming up)
        waiting = asyncio.ensure_future(standbys.next_run(standby.id, token))
        await asyncio.sleep(0)
        assert standbys.idle(StandbyKey("bob", "", Limits())) is None  # another owner's run
        assert standbys.idle(key) is standby
        ref = standbys.hand_over(standby, "run-1", {"GPULAB_RUN_URL": "u"})
        assert ref == HandedRef(ME.pid, ME.start_ticks, standby.id)
        assert await waiting == {"env": {"GPULAB_RUN_URL": "u"}}
        assert standbys.idle(key) is None and standbys.wanted(key)  # used: never again; a new one may start
        assert standbys.lost("run-1") and not standbys.lost("run-1")
        try:
            await standbys.next_run(standby.id, token)
        except PermissionError:
            pass
        else:
            raise AssertionError("a used standby asked for a second run")

    asyncio.run(scenario())


def test_an_idle_standby_is_told_to_stop_and_a_wrong_token_is_refused(tmp_path):
    async def scenario():
        standbys = Standbys("http://s/runner/", tmp_path, idle_seconds=0.05)
        standby, _ = standbys.new(StandbyKey("ann", "", Limits()), {})
        try:
            await standbys.next_run(standby.id, "wrong")
        except PermissionError:
            pass
        else:
            raise AssertionError("a wrong token was taken")
        standby.token_hash = __import__("hashlib").sha256(b"ok").hexdigest()
        assert await standbys.next_run(standby.id, "ok") == {"stop": True}
        assert standby.id not in standbys.by_id

    asyncio.run(scenario())


def test_references_round_trip():
    handed = HandedRef(12, 345, "9c5c2d8e-8a0d-4f5e-9d7a-2b9a9f1f4c11")
    assert parse_ref(str(handed)) == handed and handed.process == ProcessRef(12, 345)
    assert parse_ref("12:345") == ProcessRef(12, 345) and not isinstance(parse_ref("12:345"), HandedRef)


def test_the_hint_is_the_runs_kernel_and_folder():
    notebook = {"metadata": {"kernelspec": {"name": "ir"}}, "cells": []}
    assert kernel_of(notebook, RunOptions()) == "ir"
    assert kernel_of(notebook, RunOptions(kernel_name="python3")) == "python3"
    assert kernel_of({"metadata": {}}, RunOptions()) is None
    assert hint_of(notebook, RunOptions(cwd="data", input_path="x/a.ipynb")) == {
        "kernel": "ir", "cwd": "data", "input_path": "x/a.ipynb"}


def test_the_kernels_code_writes_the_marks_in_proc_and_binds_no_name(tmp_path):
    """The code sent to a standby's kernel, run in a process started with a standby's marks."""
    run_url, token = "http://s/runner/11111111-2222-3333-4444-555555555555/", "x" * 43
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys\n"
        f"code = {kernel_code({'GPULAB_RUN_URL': run_url, 'GPULAB_RUN_TOKEN': token, 'MLFLOW_X': 'y'})!r}\n"
        "before = set(globals())\n"
        "exec(code, globals())\n"
        "import os\n"
        "environ = open('/proc/self/environ', 'rb').read().split(b'\\0')\n"
        # (Python's own __warningregistry__ may appear, as after any import that warns)
        "print(sorted(n for n in set(globals()) - before - {'os', 'before'} if not n.startswith('__')),"
        " os.environ['MLFLOW_X'])\n"
        "print([e.decode() for e in environ if e.startswith(b'GPULAB_RUN')])\n")
    env = {"PATH": os.environ["PATH"], "GPULAB_RUN_URL": "http://s/runner/9c5c2d8e-8a0d-4f5e-9d7a-2b9a9f1f4c11/",
           "GPULAB_RUN_TOKEN": TOKEN_PLACEHOLDER}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True)
    names, marks = done.stdout.splitlines()
    assert names == "['environ'] y"
    assert sorted(eval(marks)) == [f"GPULAB_RUN_TOKEN={token}", f"GPULAB_RUN_URL={run_url}"]


def test_the_standbys_folder_is_beside_the_runs(tmp_path):
    standbys = Standbys("http://s/runner/", tmp_path / "standbys")
    standby, _ = standbys.new(StandbyKey("ann", "", Limits()), {})
    assert standby.log_path == Path(tmp_path, "standbys", f"{standby.id}.log")
