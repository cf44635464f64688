"""Scheduled runs on the docker backend run in a container of their environment's image, like
the owner's server: a real hub, its scheduler and root launcher, Podman's Docker API, and the
`cpu` image built from the committed Dockerfiles (the `container_engine` fixture).

Checked: a run's notebook executes in the image's Python under tini, as the owner's account, in
their bind-mounted home (a file it writes belongs to them on the host), with the profile's
memory limit on the container, and its parameters and output land as for a process run; the
log holds the runner's lines; a stopped run ends STOPPED with its container gone; no container
of a finished run is left; a kill -9 of the scheduler and of its root launcher during a run
loses nothing (the run ends COMPLETED, once); a job made through jupyter-scheduler's API in the owner's server (a
container too) reaches the central service and runs in the image.

Not covered: a GPU (none here; the device requests are unit-tested against literal dicts in
tests/unit/spawner/backends/docker/test_runner_container.py, and Podman 4 drops them, which the run then refuses),
Docker Engine itself (Podman serves the same API).
"""

from __future__ import annotations

import json
import os
import pwd
import signal

import pytest

from gpulab.spawner.backends.docker.runner_container import RUN_LABEL
from gpulab.hub_config.client import ClientError, HubClient
from gpulab.images.catalog import load_catalog
from gpulab.spawner.accounts import account_name
from tests.support.hub import managed_service_process, wait_for
from tests.support.scheduler_runs import notebook, outputs_text, wait_run


pytestmark = pytest.mark.root

CPU_IMAGE = next(e for e in load_catalog(None) if e.id == "cpu").image
PROBE = """
import json, os, sys
open(os.path.join(os.environ["HOME"], "made-by-a-container-run.txt"), "w").write("x")
limit = open("/sys/fs/cgroup/memory.max").read().strip() if os.path.exists("/sys/fs/cgroup/memory.max") else \\
    open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip()
print(json.dumps({"python": sys.executable, "pid1": open("/proc/1/comm").read().strip(), "uid": os.getuid(),
                  "gid": os.getgid(), "home": os.environ["HOME"], "cwd": os.getcwd(), "memory": limit,
                  "container": os.path.exists("/run/.containerenv"), "rate": rate}))
"""


@pytest.fixture(scope="module")
def hub(module_hub_factory, container_engine):
    return module_hub_factory.start({
        "spawner": {"backend": "docker", "docker": {"host": container_engine.url}},
        "profiles": [{"id": "small", "display_name": "Small CPU", "default": True, "memory": {"limit": "768Mi"}}],
        "environments": {"offer": ["cpu"], "default": "cpu"},
        "mlflow": {"enabled": False},  # not under test here
    })


@pytest.fixture(scope="module")
def dora(hub) -> HubClient:
    hub.create_user("dora")
    return HubClient(hub.url, hub.user_token("dora"))


@pytest.fixture(scope="module")
def engine(container_engine):
    client = container_engine.client()
    yield client
    client.close()


def run_containers(engine, run_id: str) -> list:
    """The run's container, if it is still there (the engine may hold other sessions' runs)."""
    return engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def test_a_run_executes_in_the_environments_image_as_its_owner(hub, dora, engine, account_prefix, homes_root):
    run = dora.request("POST", "services/scheduler/api/runs", {
        "name": "in-image", "notebook": notebook(PROBE, parameters="rate = 0.1"), "parameters": {"rate": 0.5}})
    done = wait_run(dora, run["id"], timeout=240)
    assert done["status"] == "COMPLETED", done
    executed = dora.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb")
    seen = json.loads(outputs_text(executed).strip().splitlines()[-1])
    entry = pwd.getpwnam(account_name("dora", account_prefix))
    home = str(homes_root / entry.pw_name)
    assert seen["python"].startswith("/opt/gpulab/env/")  # the image's Python, not the hub's
    assert seen["pid1"] == "tini" and seen["container"] is True
    assert (seen["uid"], seen["gid"], seen["home"], seen["cwd"]) == (entry.pw_uid, entry.pw_gid, home, home)
    assert seen["memory"] == str(768 * 2**20)
    assert seen["rate"] == 0.5  # the parameters cell papermill injects
    made = (homes_root / entry.pw_name / "made-by-a-container-run.txt").stat()
    assert (made.st_uid, made.st_gid) == (entry.pw_uid, entry.pw_gid)
    log = dora.download(f"services/scheduler/api/runs/{done['id']}/files/log.txt").decode()
    assert "gpulab" in log.lower()
    wait_for(lambda: not run_containers(engine, done["id"]), 30, "the run's container to be removed")


def test_a_stopped_run_ends_stopped_and_leaves_no_container(hub, dora, engine):
    run = dora.request("POST", "services/scheduler/api/runs",
                       {"name": "long", "notebook": notebook("import time; time.sleep(600)")})
    wait_for(lambda: dora.request("GET", f"services/scheduler/api/runs/{run['id']}")["status"] == "RUNNING"
             and run_containers(engine, run["id"]), 240, "the run to be running in its container")
    dora.request("POST", f"services/scheduler/api/runs/{run['id']}/stop")
    done = wait_run(dora, run["id"], timeout=120)
    assert done["status"] == "STOPPED", done
    wait_for(lambda: not run_containers(engine, run["id"]), 60, "the stopped run's container to be removed")


def test_a_job_made_in_jupyterlab_in_a_container_runs_in_the_image(hub, dora, engine):
    """jupyter-scheduler's REST API in the owner's server (itself a container) forwards to the
    central service, whose run starts a container of its own."""
    hub.spawn("dora", timeout=180)
    try:
        dora.request("PUT", "user/dora/api/contents/from-lab.ipynb", {
            "type": "notebook", "format": "json",
            "content": notebook("print('pid1', open('/proc/1/comm').read().strip(), 'alpha', alpha)",
                                parameters="alpha = 0")})
        [environment] = dora.request("GET", "user/dora/scheduler/runtime_environments")
        job = dora.request("POST", "user/dora/scheduler/jobs", {
            "name": "from lab", "input_uri": "from-lab.ipynb", "runtime_environment_name": environment["name"],
            "compute_type": environment["compute_types"][0], "parameters": {"alpha": "2"}})
        described = wait_for(lambda: (j := dora.request("GET", f"user/dora/scheduler/jobs/{job['job_id']}"))["status"]
                             in ("COMPLETED", "FAILED") and j, 240, "the job to finish")
        assert described["status"] == "COMPLETED", described
        executed = dora.request("GET", f"services/scheduler/api/runs/{job['job_id']}/files/output.ipynb")
        assert "pid1 tini alpha 2" in outputs_text(executed)
    finally:
        hub.stop_server("dora")
    wait_for(lambda: not run_containers(engine, job["job_id"]), 30, "the run's container to be removed")


def test_a_container_run_outlives_kill_9_of_the_scheduler_and_its_launcher_and_ends_once(hub, dora, engine):
    run = dora.request("POST", "services/scheduler/api/runs", {
        "name": "survivor", "notebook": notebook("import time; time.sleep(8)", "print('slept')")})
    wait_for(lambda: dora.request("GET", f"services/scheduler/api/runs/{run['id']}")["kernel_ready_at"], 240,
             "the run's kernel to start in its container")
    for module in ("gpulab.extensions.scheduler.launcher", "gpulab.extensions.scheduler.service"):
        process = wait_for(lambda: managed_service_process(hub, module), 30, module)
        os.kill(process.pid, signal.SIGKILL)

    def ended():  # the proxy answers 502 until the hub has started the scheduler again
        try:
            seen = dora.request("GET", f"services/scheduler/api/runs/{run['id']}")
        except ClientError as error:
            if error.status in (502, 503):
                return None
            raise
        return seen["status"] in ("COMPLETED", "FAILED", "TIMED_OUT", "STOPPED") and seen

    done = wait_for(ended, 240, "the run to end after the kills")
    assert done["status"] == "COMPLETED" and done["attempt"] == 1, (done, hub.log_tail())
    executed = dora.request("GET", f"services/scheduler/api/runs/{done['id']}/files/output.ipynb")
    assert "slept" in outputs_text(executed)
    assert [r["id"] for r in dora.request("GET", "services/scheduler/api/runs")
            if r["schedule_id"] == done["schedule_id"]] == [done["id"]]
    wait_for(lambda: not run_containers(engine, run["id"]), 60, "the run's container to be removed")
