"""Warm kernels are as isolated as cold ones (issue 16): real hub as root, real system accounts.
A server forked by the zygote forks its Python kernels from its kernel template
(spawner/backends/local/warm_kernel.py). Each test reads the template and the kernel from /proc as
root, and from inside, in the user's own kernel: their account, groups, cgroup, descriptors,
environment, command line; then restart, interrupt, shutdown and stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import psutil
import pytest

from tests.support.hub import wait_for
from tests.support.kernels import Kernel, KernelError
from tests.support.warm_servers import account, all_ended, descriptors, in_kernel, proc_status, processes_of, server_process, stop_and_expect_nothing_left

pytestmark = pytest.mark.root

PROFILES = [{"id": "small", "display_name": "Small", "default": True,
             "cpu": {"limit": 1}, "memory": {"limit": "1Gi"}}]
TEMPLATE = "gpulab.spawner.backends.local.warm_kernel"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start({"profiles": PROFILES})
    for name in ("alice", "bob"):
        hub.create_user(name)
        hub.spawn(name)
    return hub








def template_process(hub, user: str) -> psutil.Process:
    found = processes_of(hub, user, TEMPLATE)
    assert len(found) == 1, found
    return found[0]




@pytest.fixture
def kernels(hub):
    """Kernels kept running while a test reads them from /proc: kernels(user) -> (Kernel, facts)."""
    started: list[Kernel] = []

    def start(user: str) -> tuple[Kernel, dict]:
        kernel = Kernel(hub.url, user, hub.user_token(user))
        started.append(kernel)
        return kernel, json.loads(kernel.run(KERNEL_FACTS).strip().splitlines()[-1])

    yield start
    for kernel in started:
        kernel.shutdown()




KERNEL_FACTS = """
import json, os, sys
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "parent": int(os.environ["JPY_PARENT_PID"]),
                  "cwd": os.getcwd(), "path": sys.path, "argv": sys.argv, "executable": sys.executable,
                  "sid": os.getsid(0),
                  "pgid": os.getpgid(0)}))
"""


def test_kernels_are_forked_by_the_servers_template_as_its_account(hub, kernels):
    for user in ("alice", "bob"):
        entry, server, template = account(hub, user), server_process(hub, user), template_process(hub, user)
        assert template.ppid() == server.pid  # the server's child, started before the server ran
        _, facts = kernels(user)
        kernel = psutil.Process(facts["pid"])
        assert facts["ppid"] == template.pid and facts["parent"] == server.pid
        for pid in (template.pid, kernel.pid):
            status = proc_status(pid)
            assert status["Uid"] == [str(entry.pw_uid)] * 4 and status["Gid"] == [str(entry.pw_gid)] * 4
            assert sorted(map(int, status["Groups"])) == sorted(os.getgrouplist(entry.pw_name, entry.pw_gid))
            assert status["CapEff"] == ["0000000000000000"]
            assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{server.pid}/cgroup").read_text()
        # what `python -m ipykernel_launcher -f FILE` started in the home would show and have
        assert kernel.cmdline()[:3] == [sys.executable, "-m", "ipykernel_launcher"] and kernel.cmdline()[3] == "-f"
        assert facts["argv"][0].endswith("ipykernel_launcher.py") and facts["argv"][1] == "-f"
        assert facts["executable"] == sys.executable
        # ipykernel_launcher takes the working folder `python -m` put first off sys.path and IPython puts
        # "" before the first site-packages (unless sys.flags.safe_path, as `python -I` would set)
        path = facts["path"]
        site = next(i for i, folder in enumerate(path) if folder.endswith("-packages"))
        assert facts["cwd"] == entry.pw_dir and entry.pw_dir not in path and path.index("") == site - 1
        assert facts["sid"] == facts["pgid"] == facts["pid"]  # a new session, as Popen(start_new_session=True)
        assert "jupyterhub-singleuser" not in " ".join(template.cmdline())


def test_the_template_and_kernels_hold_nothing_of_the_zygote_or_another_user(hub, kernels):
    alice, bob = server_process(hub, "alice"), server_process(hub, "bob")
    template = template_process(hub, "alice")
    kernels("bob")
    _, facts = kernels("alice")
    logs = hub.data_dir / "logs" / "servers"
    own_log = str(logs / f"{account(hub, 'alice').pw_name}.log")
    bob_held = set(descriptors(bob.pid).values()) | set(descriptors(template_process(hub, "bob").pid).values())
    held_by_template = descriptors(template.pid)
    kernel = descriptors(facts["pid"])
    assert held_by_template[0] == "/dev/null" and held_by_template[1] == held_by_template[2] == own_log
    # stdin as Popen(stdin=PIPE) gives it; stdout and stderr the server's (ipykernel puts pipes on 1 and 2
    # to capture them, and keeps copies of what they were)
    assert kernel[0].startswith("pipe:") and own_log in kernel.values()
    template_sockets = {t for t in held_by_template.values() if t.startswith("socket:")}
    assert len(template_sockets) == 1 + len(processes_of(hub, "alice", "ipykernel_launcher"))  # its pair, one per kernel
    for target in [*held_by_template.values(), *kernel.values()]:
        assert not (target.startswith(("socket:", "pipe:")) and target in bob_held), target
        assert not target.startswith(str(logs)) or target == own_log, target
        assert account(hub, "bob").pw_dir not in target
    assert not template_sockets & set(kernel.values())  # no kernel holds the template's pair or another's socket
    # the template's environment is the server's: nothing of the spawn's request beyond it, nothing of bob's
    template_env, server_env = template.environ(), alice.environ()
    assert template_env == server_env
    assert bob.environ()["JUPYTERHUB_API_TOKEN"] not in json.dumps(template_env)
    # its account reads the template's /proc entries as its own (dumpable, as the server), bob's not
    code = f"""
import json
def attempt(path):
    try:
        open(path, "rb").read(1)
        return "allowed"
    except OSError as error:
        return type(error).__name__
print(json.dumps({{"own": attempt("/proc/{template.pid}/environ"),
                   "bob": attempt("/proc/{template_process(hub, 'bob').pid}/environ")}}))
"""
    assert in_kernel(hub, "alice", code) == {"own": "allowed", "bob": "PermissionError"}


def test_restart_interrupt_and_shutdown_of_a_forked_kernel(hub):
    kernel = Kernel(hub.url, "alice", hub.user_token("alice"))
    try:
        first = int(kernel.run("import os; print(os.getpid())").strip())
        assert psutil.Process(first).ppid() == template_process(hub, "alice").pid
        kernel.client.request("POST", kernel.path + f"api/kernels/{kernel.kernel_id}/restart")
        wait_for(lambda: not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE,
                 10, "the first kernel to end")
        second = int(kernel.run("import os; print(os.getpid())").strip())
        assert second != first and psutil.Process(second).ppid() == template_process(hub, "alice").pid
        assert "KeyboardInterrupt" in interrupted(kernel, "import time; time.sleep(60)")
        assert kernel.run("print(1 + 1)").strip() == "2"
    finally:
        kernel.shutdown()
    wait_for(lambda: not psutil.pid_exists(second), 10, "the kernel to end and be reaped by its template")


def interrupted(kernel: Kernel, code: str) -> str:
    """Run `code` and interrupt the kernel (through the server: SIGINT to its process group) once it
    runs; what the kernel reported (KernelError's text)."""
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(kernel.run, code)
        # an interrupt that arrives before the code starts is lost: sent again every second
        for _ in range(20):
            kernel.client.request("POST", kernel.path + f"api/kernels/{kernel.kernel_id}/interrupt")
            try:
                running.result(timeout=1)
            except KernelError as error:
                return str(error)
            except FutureTimeout:
                continue
        return "not interrupted"


def test_stop_ends_the_template_and_its_kernels(hub):
    hub.create_user("carol")
    hub.spawn("carol")
    server, template = server_process(hub, "carol"), template_process(hub, "carol")
    kernel = Kernel(hub.url, "carol", hub.user_token("carol"))
    kernel_pid = int(kernel.run("import os; print(os.getpid())").strip())
    child = int(kernel.run("import subprocess; print(subprocess.Popen(['sleep', '600']).pid)").strip())
    started = [server, template, psutil.Process(kernel_pid), psutil.Process(child)]
    stop_and_expect_nothing_left(hub, "carol", started, "carol's server, template, kernel and sleep to end")


def test_a_template_killed_with_its_server_takes_its_kernels(hub):
    hub.create_user("dora")
    hub.spawn("dora")
    server, template = server_process(hub, "dora"), template_process(hub, "dora")
    kernel = Kernel(hub.url, "dora", hub.user_token("dora"))
    kernel_pid = int(kernel.run("import os; print(os.getpid())").strip())
    server.kill()  # no stop: the template and its kernels must not outlive the server
    gone = [template, psutil.Process(kernel_pid)]
    wait_for(lambda: all_ended(gone), 10,
             "dora's template and kernel to end with her server")
    hub.stop_server("dora")


def test_the_debugger_starts_in_a_forked_kernel(hub):
    """JupyterLab's first debug request (`initialize`, on the control channel) starts debugpy in the
    kernel (its listener, and its adapter as a process of the account) and is forwarded to it: a
    forked kernel answers with debugpy's capabilities, and the adapter ends with the kernel."""
    kernel = Kernel(hub.url, "alice", hub.user_token("alice"))
    try:
        process = psutil.Process(int(kernel.run("import os; print(os.getpid())").strip()))
        assert process.ppid() == template_process(hub, "alice").pid
        reply = asyncio.run(asyncio.wait_for(debug_request(kernel, "initialize", INITIALIZE), 60))
        assert reply["success"] is True and reply["command"] == "initialize", reply
        assert reply["body"]["supportsConfigurationDoneRequest"] is True, reply
        info = asyncio.run(asyncio.wait_for(debug_request(kernel, "debugInfo", {}), 60))
        assert info["success"] is True and info["body"]["isStarted"] is True, info
        adapters = processes_of(hub, "alice", "debugpy/adapter")  # it daemonizes: not the kernel's child
        assert len(adapters) == 1, adapters
    finally:
        kernel.shutdown()
    wait_for(lambda: all_ended([process, *adapters]), 30, "the kernel and its debug adapter to end")


# What JupyterLab's debugger sends first (@jupyterlab/debugger's session.ts)
INITIALIZE = {"clientID": "jupyterlab", "clientName": "JupyterLab", "adapterID": "python", "pathFormat": "path",
              "linesStartAt1": True, "columnsStartAt1": True, "supportsVariableType": True,
              "supportsVariablePaging": True, "supportsRunInTerminalRequest": True, "locale": "en-us"}


async def debug_request(kernel: Kernel, command: str, arguments: dict) -> dict:
    """Send a `debug_request` on the kernel's control channel through the server; the reply's content."""
    connection, msg_id = await kernel.send("control", "debug_request", {
        "type": "request", "seq": 1, "command": command, "arguments": arguments})
    try:
        while True:
            raw = await connection.read_message()
            assert raw is not None, "the kernel's websocket closed"
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") == msg_id and message["header"]["msg_type"] == "debug_reply":
                return message["content"]
    finally:
        connection.close()
