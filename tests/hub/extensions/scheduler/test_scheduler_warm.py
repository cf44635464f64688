"""The warm path of scheduled runs (issue 16): standby runners, real hub, real runs and kernels.

After a run of an owner ends, the scheduler starts a standby runner for that owner (Papermill
imported, a kernel started); the owner's next run is handed to it. These tests check that a
handed run gives what a cold one gives, that a standby serves only its owner and only one run,
that a killed standby means a cold start (not a lost run), and that a restarted scheduler leaves
no standby behind. No timing is asserted.
"""

from __future__ import annotations

import os
import re
import signal

import psutil
import pytest

from gpulab.hub_config.client import HubClient
from tests.support.hub import RunningHub, wait_for
from tests.support.scheduler_runs import answers, notebook, outputs_text, run_once, scheduler_pids, wait_run


pytestmark = pytest.mark.root  # runs as their owners' accounts, standbys included

STARTED = re.compile(r"run (\S+) of .* started as \S+ \((\d+):(\S+?)(?:@(\S+))?\)")
WARM = re.compile(r"standby (\S+) for (\S+) is warm")
STANDBY_STARTED = re.compile(r"standby (\S+) for (\S+) started \((\d+):")

# What a run sees of its own process and kernel (the run id is replaced, so two runs compare),
# whether its namespace is fresh, its parameters, and a failure with its traceback
PROBE = notebook(
    "import os, sys\n"
    "print(sorted(k for k in os.environ if k.startswith(('GPULAB', 'MLFLOW', 'JUPYTER', 'CUDA'))))\n"
    "print(os.getcwd() == os.path.expanduser('~'), os.environ['CUDA_VISIBLE_DEVICES'] == '')\n"
    "print(os.environ['GPULAB_RUN_URL'].rstrip('/').rsplit('/', 1)[1])\n"
    "print(open('/proc/self/environ', 'rb').read().split(b'GPULAB_RUN_URL=')[1].split(b'\\0')[0].decode())",
    "print('leak' if 'x' in globals() else 'fresh', len(In), y)\n"
    "x = 42",
    "1 / 0",
    parameters="y = 1")


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"scheduler": {"prewarm_seconds": 2}, "mlflow": {"enabled": False},
                                     "ssh": {"enabled": False}})


def client_of(hub: RunningHub, name: str) -> HubClient:
    hub.create_user(name)
    return HubClient(hub.url, hub.user_token(name))


def log(hub: RunningHub) -> str:
    return hub.log_path.read_text(errors="replace") if hub.log_path else ""


def started_as(hub: RunningHub, run_id: str) -> tuple[int, str | None]:
    """(the runner's pid, the standby it was handed to or None) from the scheduler's log, last start."""
    found = [m for m in STARTED.finditer(log(hub)) if m.group(1) == run_id]
    assert found, f"run {run_id} was not started"
    return int(found[-1].group(2)), found[-1].group(4)


def warm_standby(hub: RunningHub, owner: str, besides: tuple[str, ...] = ()) -> str:
    """The id of a standby of `owner` that is warm (waiting for a run), other than `besides`."""
    def find():
        ids = [m.group(1) for m in WARM.finditer(log(hub)) if m.group(2) == owner and m.group(1) not in besides]
        return ids[-1] if ids else None

    return wait_for(find, 120, f"a warm standby for {owner}")


def standby_pid(hub: RunningHub, standby_id: str) -> int:
    return next(int(m.group(3)) for m in STANDBY_STARTED.finditer(log(hub)) if m.group(1) == standby_id)


def carrying(mark: str) -> list[psutil.Process]:
    """Live processes whose GPULAB_RUN_URL ends in `mark` (a run's or a standby's id)."""
    from gpulab.spawner.backends.local.runner_process import leftovers

    return [p for p in leftovers(mark) if p.status() != psutil.STATUS_ZOMBIE]


def comparable(executed: dict, run_id: str) -> list:
    """The cells as the user sees them (source, outputs, tracebacks, In [N]), the run id replaced."""
    def shown(output: dict) -> str:
        text = output.get("text", "")
        text = "".join(text) if isinstance(text, list) else text
        return (text + "".join(output.get("traceback", [])) + str(output.get("ename", ""))).replace(run_id, "RUN")

    return [(cell["source"], [shown(o) for o in cell.get("outputs", [])], cell.get("execution_count"),
             cell["metadata"].get("tags")) for cell in executed["cells"]]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_run_handed_to_a_standby_ends_as_a_cold_run_does(hub):
    carol = client_of(hub, "warm-carol")
    cold = wait_run(carol, run_once(carol, PROBE, parameters={"y": 7})["id"])
    assert started_as(hub, cold["id"])[1] is None  # the owner's first run starts cold
    standby = warm_standby(hub, "warm-carol")
    warm = wait_run(carol, run_once(carol, PROBE, parameters={"y": 7})["id"])
    assert started_as(hub, warm["id"])[1] == standby
    for run in (cold, warm):
        assert run["status"] == "FAILED" and run["error"]["ename"] == "ZeroDivisionError", run
    cold_nb, warm_nb = (carol.request("GET", f"services/scheduler/api/runs/{r['id']}/files/output.ipynb")
                        for r in (cold, warm))
    assert comparable(warm_nb, warm["id"]) == comparable(cold_nb, cold["id"])
    text = outputs_text(warm_nb)
    assert "fresh" in text and "leak" not in text
    assert text.count(warm["id"]) == 2  # the run's URL in os.environ and in /proc/PID/environ of the kernel
    assert (warm["error"]["ename"], warm["error"]["cell_index"]) == (cold["error"]["ename"], cold["error"]["cell_index"])
    assert warm["message"] == cold["message"]
    assert {"output.ipynb", "output.html", "log.txt"} <= set(warm["outputs"])


def test_a_standby_never_runs_another_users_run_nor_a_second_run(hub):
    dave, erin = client_of(hub, "warm-dave"), client_of(hub, "warm-erin")
    assert wait_run(dave, run_once(dave, notebook("print(1)"))["id"])["status"] == "COMPLETED"
    daves = warm_standby(hub, "warm-dave")
    erins_run = wait_run(erin, run_once(erin, notebook("import os; print(os.getuid())"))["id"])
    assert erins_run["status"] == "COMPLETED"
    assert started_as(hub, erins_run["id"])[1] is None  # cold, though dave's standby waits
    assert alive(standby_pid(hub, daves))
    first = wait_run(dave, run_once(dave, notebook("secret = 'dave-1'", "print(secret)"))["id"])
    assert first["status"] == "COMPLETED" and started_as(hub, first["id"])[1] == daves
    # the next run gets a new standby (a fresh kernel), never the used one
    second_standby = warm_standby(hub, "warm-dave", besides=(daves,))
    second = wait_run(dave, run_once(dave, notebook("print(globals().get('secret', 'no secret'))"))["id"])
    assert second["status"] == "COMPLETED" and started_as(hub, second["id"])[1] == second_standby
    assert "no secret" in outputs_text(dave.request("GET", f"services/scheduler/api/runs/{second['id']}/files/output.ipynb"))
    wait_for(lambda: not alive(standby_pid(hub, daves)), 30, "the used standby to end")


def test_a_killed_standby_means_a_cold_start_not_a_lost_run(hub):
    fay = client_of(hub, "warm-fay")
    assert wait_run(fay, run_once(fay, notebook("print(1)"))["id"])["status"] == "COMPLETED"
    standby = warm_standby(hub, "warm-fay")
    pid = standby_pid(hub, standby)
    kernels = [p for p in carrying(standby) if p.pid != pid]
    assert kernels, "the standby's kernel"
    os.kill(pid, signal.SIGKILL)
    run = wait_run(fay, run_once(fay, notebook("print('after the kill')"))["id"])
    assert run["status"] == "COMPLETED", run
    assert started_as(hub, run["id"])[1] != standby
    wait_for(lambda: not carrying(standby), 30, "the killed standby's kernel to be stopped")


def test_the_schedulers_restart_leaves_no_standby_behind(hub_factory):
    # a hub of its own: the module's has its standbys (at most 4 on a machine) and keeps its scheduler
    hub = hub_factory.start({"mlflow": {"enabled": False}, "ssh": {"enabled": False}})
    gil = client_of(hub, "warm-gil")
    assert wait_run(gil, run_once(gil, notebook("print(1)"))["id"])["status"] == "COMPLETED"
    standby = warm_standby(hub, "warm-gil")
    assert carrying(standby)
    [old] = scheduler_pids(hub)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: (pids := scheduler_pids(hub)) and old not in pids, 60, "the hub to restart the scheduler")
    wait_for(lambda: not carrying(standby), 60, "the old standby and its kernel to end")
    # and runs go on, cold first
    wait_for(lambda: answers(gil), 60, "the scheduler to answer again")
    run = wait_run(gil, run_once(gil, notebook("print('after the restart')"))["id"], timeout=180)
    assert run["status"] == "COMPLETED", run


def test_standby_runners_0_turns_the_warm_path_off(hub_factory):
    """scheduler.standby_runners: 0: every run starts cold, and no standby is started after a run."""
    hub = hub_factory.start({"scheduler": {"standby_runners": 0}, "mlflow": {"enabled": False},
                             "ssh": {"enabled": False}})
    fay = client_of(hub, "warm-fay")
    runs = [wait_run(fay, run_once(fay, notebook("print(1)"))["id"]) for _ in range(2)]
    assert [run["status"] for run in runs] == ["COMPLETED", "COMPLETED"]
    assert [started_as(hub, run["id"])[1] for run in runs] == [None, None]
    assert not STANDBY_STARTED.search(log(hub))
