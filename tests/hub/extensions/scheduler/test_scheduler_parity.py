"""`gpulab run` against bare `papermill`: the same corpus, the same account, the same results.

Every notebook of tests/scheduler_corpus runs twice from its own folder, as the run's owner:
`papermill IN OUT <options>` and `gpulab run IN <options> --wait --output OUT` on a real hub.
Both must agree on the outcome, the injected parameters cell and the failing cell (its index
in the input notebook, its `In [N]`, the exception). The runs share one hub and go a few at a
time. The module also covers what a run keeps when it never finishes (timeout, stop, a killed
runner) and the command line's error messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from gpulab.hub_config.client import HubClient
from gpulab.spawner.accounts import account_name, ensure_account
from tests.scheduler_corpus import CORPUS, Case
from tests.support.hub import GPULAB, wait_for
from tests.support.scheduler_runs import notebook, outputs_text, run_once, wait_run


pytestmark = pytest.mark.root  # Papermill runs as the run's owner, a system account
USER = "parity"
PAPERMILL = str(Path(sys.executable).parent / "papermill")
ERROR_MARKER = "papermill-error-cell-tag"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    # MLflow and SSH play no part here: off, to keep the hub small
    hub = module_hub_factory.start({"scheduler": {"prewarm_seconds": 2}, "mlflow": {"enabled": False},
                                    "ssh": {"enabled": False}})
    hub.create_user(USER)
    return hub


@pytest.fixture(scope="module")
def owner(hub) -> pwd.struct_passwd:
    local = hub.settings["spawner"]["local"]
    return asyncio.run(ensure_account(account_name(USER, local["account_prefix"]), Path(local["home_root"])))


@pytest.fixture(scope="module")
def client(hub) -> HubClient:
    return HubClient(hub.url, hub.user_token(USER))


def as_owner(owner: pwd.struct_passwd):
    def become():
        os.setgid(owner.pw_gid)
        os.initgroups(owner.pw_name, owner.pw_gid)
        os.setuid(owner.pw_uid)

    return become


def owned_copy(case: Case, folder: Path, owner: pwd.struct_passwd) -> Path:
    """The case in a folder of the owner's home, owned by the owner (as their own notebooks are)."""
    path = case.write(folder)
    for item in [folder, *folder.rglob("*")]:
        os.chown(item, owner.pw_uid, owner.pw_gid)
    return path


def run_papermill(case: Case, owner: pwd.struct_passwd) -> dict:
    folder = Path(owner.pw_dir, "papermill", case.name)
    path = owned_copy(case, folder, owner)
    env = {"HOME": owner.pw_dir, "USER": owner.pw_name, "LANG": "C.UTF-8",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([PAPERMILL, path.name, "output.ipynb", "--no-progress-bar", *case.papermill_args(folder)],
                          cwd=folder, env=env, preexec_fn=as_owner(owner), capture_output=True, text=True, timeout=300)
    output = folder / "output.ipynb"
    return {"ok": done.returncode == 0, "log": done.stderr[-3000:],
            "notebook": json.loads(output.read_text()) if output.exists() else None}


def run_gpulab(case: Case, owner: pwd.struct_passwd, hub, client: HubClient, scratch: Path) -> dict:
    folder = Path(owner.pw_dir, "gpulab", case.name)
    path = owned_copy(case, folder, owner)
    output = scratch / f"{case.name}.ipynb"
    env = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": hub.user_token(USER)}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    done = subprocess.run([GPULAB, "run", path.name, *case.gpulab_args(folder), "--wait", "--output", str(output)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    run = client.request("GET", f"services/scheduler/api/runs/{done.stdout.split()[0]}")
    executed = output if output.exists() else None
    if executed is None and "output.ipynb" in run["outputs"]:
        executed = scratch / f"{case.name}-downloaded.ipynb"
        executed.write_bytes(client.download(f"services/scheduler/api/runs/{run['id']}/files/output.ipynb"))
    return {"ok": done.returncode == 0, "run": run, "log": done.stderr[-3000:],
            "notebook": json.loads(executed.read_text()) if executed else None}


@pytest.fixture(scope="module")
def results(hub, owner, client, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("parity")
    with ThreadPoolExecutor(4) as pool:
        papermill = {c.name: pool.submit(run_papermill, c, owner) for c in CORPUS}
        gpulab = {c.name: pool.submit(run_gpulab, c, owner, hub, client, scratch) for c in CORPUS}
        found = {name: (papermill[name].result(), gpulab[name].result()) for name in papermill}
    yield found
    for side in ("papermill", "gpulab"):
        shutil.rmtree(Path(owner.pw_dir, side), ignore_errors=True)


def tags(cell: dict) -> list:
    return cell.get("metadata", {}).get("tags", []) or []


def injected_source(nb: dict | None) -> str | None:
    cells = [c for c in (nb or {}).get("cells", []) if "injected-parameters" in tags(c)]
    return "".join(cells[0]["source"]) if cells else None


def error_cell(nb: dict | None) -> tuple | None:
    """(index in the input notebook, In [N], ename) of the cell Papermill reports as failing."""
    if nb is None:
        return None
    index = -1
    for cell in nb["cells"]:
        if ERROR_MARKER in tags(cell):
            continue
        if "injected-parameters" not in tags(cell):
            index += 1
        for output in cell.get("outputs", []):
            if output["output_type"] == "error" and not (output["ename"] == "SystemExit" and output["evalue"] in ("", "0")):
                return index, cell["execution_count"], output["ename"]
    return None


def streams(nb: dict | None) -> list:
    """Each cell's printed text (what the user reads), without the timings %time prints.

    Consecutive outputs of one stream are joined, as Jupyter shows them: where the kernel splits
    one print into two messages depends on timing (ipykernel flushes its buffer every 0.2 s, so
    `print(total, text)` on a busy machine once came as "499500" and " hidden\n"), not on the tool
    that ran the notebook."""
    def joined(cell: dict) -> list[str]:
        texts: list[str] = []
        previous = None
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", ""))
            if output["output_type"] != "stream" or "Wall time" in text or "CPU times" in text:
                previous = None
                continue
            if texts and output["name"] == previous:
                texts[-1] += text
            else:
                texts.append(text)
            previous = output["name"]
        return texts

    return [joined(c) for c in (nb or {}).get("cells", []) if ERROR_MARKER not in tags(c)]


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_gpulab_run_agrees_with_papermill(results, case):
    papermill, gpulab = results[case.name]
    context = f"papermill: {papermill['log']}\n---\ngpulab: {gpulab['log']}"
    assert gpulab["ok"] == papermill["ok"], context
    assert gpulab["run"]["status"] == ("COMPLETED" if papermill["ok"] else "FAILED"), context
    assert injected_source(gpulab["notebook"]) == injected_source(papermill["notebook"])
    assert error_cell(gpulab["notebook"]) == error_cell(papermill["notebook"])
    assert streams(gpulab["notebook"]) == streams(papermill["notebook"])
    failing = error_cell(papermill["notebook"])
    if failing is not None:  # the run reports the cell as the user sees it
        error = gpulab["run"]["error"]
        assert (error["cell_index"], error["execution_count"], error["ename"]) == failing, error
        assert f"the failing cell: cell {failing[0]} of {case.name}.ipynb (In [{failing[1]}])" in gpulab["log"]


def test_the_corpus_covers_what_the_issue_asks(results):
    outcomes = {name: (p["ok"], error_cell(p["notebook"])) for name, (p, _) in results.items()}
    assert len(CORPUS) >= 15
    assert outcomes["sys_exit_0"][0] and not outcomes["sys_exit_1"][0]
    assert outcomes["error_after_injected_parameters"][1][0] == 3  # after the injected cell, as in the input
    assert not outcomes["non_python_kernel_not_installed"][0] and outcomes["kernel_chosen_with_k"][0]
    assert outcomes["reads_a_file_beside_it"][0] and outcomes["cwd_option"][0]


def test_an_unavailable_kernel_fails_the_run_naming_it(results):
    _, gpulab = results["non_python_kernel_not_installed"]
    assert gpulab["run"]["error"]["ename"] == "NoSuchKernel" and "ir" in gpulab["run"]["message"], gpulab["run"]


def test_values_papermill_types_land_as_papermill_injects_them(results):
    _, gpulab = results["papermill_typed_values"]
    assert "h = \"2024-01-01\"" in injected_source(gpulab["notebook"])
    # -p infers only int, float, True/False/None: YAML's null and true stay strings, as with Papermill
    assert "[None, 'null', 'true', '[1, 2]', '0x1F', '#tag', 'Run: baseline', '2024-01-01', 1000.0, '42']" \
        in outputs_text(gpulab["notebook"])


# ---------------------------------------------------------------- runs that never finish keep their notebook

def runner_of(owner: pwd.struct_passwd) -> psutil.Process | None:
    for process in psutil.process_iter(["username", "cmdline"]):
        if process.info["username"] == owner.pw_name and "gpulab.extensions.scheduler.runner" in \
                " ".join(process.info["cmdline"] or []):
            return process
    return None


SLOW = notebook("print('first cell done')", "import time; time.sleep(600)")


def test_a_timed_out_run_keeps_its_partial_notebook(client):
    done = wait_run(client, run_once(client, SLOW, timeout_seconds=10)["id"], timeout=120)
    assert done["status"] == "TIMED_OUT" and "output.ipynb" in done["outputs"], done
    executed = client.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb")
    assert "first cell done" in outputs_text(executed)


def test_a_stopped_run_keeps_its_partial_notebook(client):
    run = run_once(client, SLOW)
    wait_for(lambda: client.request("GET", f"services/scheduler/api/runs/{run['id']}")["cells_done"] >= 1, 120,
             "the first cell")
    client.request("POST", f"services/scheduler/api/runs/{run['id']}/stop")
    done = wait_run(client, run["id"])
    assert done["status"] == "STOPPED" and "output.ipynb" in done["outputs"], done
    executed = client.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb")
    assert "first cell done" in outputs_text(executed)


def test_a_killed_runner_leaves_the_notebook_as_far_as_it_got(client, owner):
    run = run_once(client, SLOW)
    # the runner sends its notebook when a cell starts after others ended (then at most every 10 s)
    wait_for(lambda: "output.ipynb" in client.request("GET", f"services/scheduler/api/runs/{run['id']}")["outputs"],
             120, "the partial notebook")
    runner = runner_of(owner)
    assert runner is not None
    runner.kill()
    done = wait_run(client, run["id"])
    assert done["status"] == "FAILED" and "output.ipynb" in done["outputs"], done
    executed = client.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb")
    assert "first cell done" in outputs_text(executed)
    for process in psutil.process_iter(["username", "cmdline"]):  # the orphaned kernel, killed here, not by name
        if process.info["username"] == owner.pw_name and "ipykernel_launcher" in " ".join(process.info["cmdline"] or []):
            process.kill()


# ---------------------------------------------------------------- the command line's errors: one line each

@pytest.fixture
def gpulab(hub, tmp_path):
    env = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": hub.user_token(USER)}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    (tmp_path / "nb.ipynb").write_text(json.dumps(notebook("1")))

    def run(*args):
        return subprocess.run([GPULAB, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    return run


@pytest.mark.parametrize("args, message", [
    (["schedule", "pause", "nonexistent"], "no schedule 'nonexistent'"),
    (["schedule", "delete", "00000000-0000-0000-0000-000000000000"], "no schedule 00000000-0000-0000-0000-000000000000"),
    (["schedule", "logs", "nope"], "no run 'nope'"),
    (["run", "nb.ipynb", "-y", "[1, 2]"], "expected a YAML mapping"),
    (["run", "nb.ipynb", "-f", "missing.yaml"], "-f missing.yaml: cannot read it"),
    (["run", "nb.ipynb", "-b", "***"], "not base64"),
    (["run", "nb.ipynb", "-p", "x=nan"], "JSON has no NaN"),
    (["run", "nb.ipynb", "--kernel", "no kernel"], "kernel_name"),
])
def test_every_cli_error_is_one_line(gpulab, args, message):
    result = gpulab(*args)
    assert result.returncode == 2, result
    assert result.stdout == "" and result.stderr.count("\n") == 1 and "<" not in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_schedule_create_reads_parameters_as_papermill_does(gpulab, client, tmp_path):
    (tmp_path / "p.yaml").write_text("from_file: [1, {a: b}]\nlr: 0.5\n")
    created = gpulab("schedule", "create", "nb.ipynb", "--cron", "0 6 * * *", "-y", "day: 2024-01-01\nlr: 0.1",
                     "-f", "p.yaml", "-p", "lr=1e-3", "-p", "tag=#x", "-p", "none=None", "-r", "raw=True",
                     "--kernel", "python3", "--cwd", "data")
    assert created.returncode == 0, created.stderr
    schedule = client.request("GET", f"services/scheduler/api/schedules/{created.stdout.split()[0]}")
    assert schedule["parameters"] == {"day": "2024-01-01", "lr": 0.001, "from_file": [1, {"a": "b"}], "tag": "#x",
                                      "none": None, "raw": "True"}
    client.request("DELETE", f"services/scheduler/api/schedules/{schedule['id']}")
