"""The runner's side of a standby (the warm path): Papermill imported and a kernel started before
the run exists, then the next matching run of its owner.

A standby is an ordinary runner process (same launcher, account, cgroup, environment, private
kernel sockets) started with GPULAB_STANDBY_URL instead of a run: it imports what a run imports,
starts a kernel as nbclient would (the kernel name and working directory the owner's last run
used), then asks the scheduler for a run and waits (one long request). The answer is a run's
variables (GPULAB_RUN_URL, its token, MLflow's): the runner takes them, sets them in its kernel
too, and from there is the runner of that run. A run whose kernel name or working directory
differs from the kernel's gets a kernel of its own, as a cold run does, and the warm one is
stopped. A standby runs one run at most: a fresh kernel per run, no state carried over. With no
run by GPULAB_STANDBY_WAIT seconds, or when the scheduler answers "stop" or goes away, it stops
its kernel and exits.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from typing import Any, Callable

from traitlets.config import Config

from gpulab.spawner.runtime_dir import kernel_manager_config

from .run_options import RunOptions, working_directory

URL_VARIABLE = "GPULAB_STANDBY_URL"
STANDBY_VARIABLES = (URL_VARIABLE, "GPULAB_STANDBY_TOKEN", "GPULAB_STANDBY_HINT", "GPULAB_STANDBY_WAIT")
DEFAULT_KERNEL = "python3"
# What marks a run's processes in /proc/PID/environ (the launcher's stop and clean-up find them by
# it, and who reads /proc sees the run's URL and token there as in a cold run's runner). A standby
# starts with values of the same length (its own id in the URL, a placeholder token) and writes
# the run's over them in place at hand-over, in the runner and in its kernel.
MARKS = ("GPULAB_RUN_URL", "GPULAB_RUN_TOKEN")

# Runs in the runner and, sent as code, in the kernel: overwrite variables' values in the process's
# original environment block (the memory /proc/PID/environ shows, as setproctitle does for argv),
# where the new value has the old one's length; the names written.
REWRITE_SOURCE = """
def rewrite(values):
    import ctypes
    with open("/proc/self/stat", "rb") as stat:
        start = int(stat.read().rsplit(b")", 1)[1].split()[47])  # field 50: env_start
    with open("/proc/self/environ", "rb") as environ:
        block = environ.read()
    offset, written = 0, set()
    for entry in block.split(b"\\0"):
        name, equals, old = entry.partition(b"=")
        new = values.get(name.decode(errors="replace"), "").encode()
        if equals and new and len(new) == len(old):
            ctypes.memmove(start + offset + len(name) + 1, new, len(old))
            written.add(name.decode())
        offset += len(entry) + 1
    return written
"""


def _compiled_rewrite() -> Callable[[dict], set]:
    """REWRITE_SOURCE's `rewrite`: the same code as the kernel runs."""
    namespace: dict = {}
    exec(REWRITE_SOURCE, namespace)
    return namespace["rewrite"]


REWRITE = _compiled_rewrite()


def mark_as_run(env: dict) -> bool:
    """This process's /proc/PID/environ now carries the run's URL and token."""
    try:
        return set(MARKS) <= REWRITE({name: env.get(name, "") for name in MARKS})
    except (OSError, ValueError, IndexError):
        return False


def kernel_of(notebook: dict, options: RunOptions) -> str | None:
    """The kernel Papermill starts for `notebook` (`-k`, else its kernelspec); None: Papermill refuses it."""
    return options.kernel_name or (notebook.get("metadata", {}).get("kernelspec") or {}).get("name") or None


def kernel_directory(options: RunOptions, home: str) -> str:
    """Where a run with `options` starts its kernel (execution.execute's rule)."""
    cwd, _ = working_directory(options, home)
    return cwd if os.path.isdir(cwd) else home


def hint_of(notebook: dict, options: RunOptions) -> dict:
    """What a standby for the owner's next run starts: this run's kernel and folder (pure)."""
    return {"kernel": kernel_of(notebook, options) or DEFAULT_KERNEL, "cwd": options.cwd,
            "input_path": options.input_path}


def _kernel_classes():
    """A kernel manager whose first client is the one the standby connected and saw ready, so
    nbclient's own start of a client (channels, the ready check's 0.2 s wait for stray output)
    is done before the run; a client is otherwise nbclient's AsyncKernelClient."""
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    class WarmClient(AsyncKernelClient):
        ready = False

        def start_channels(self, *args, **kwargs) -> None:
            if not self.channels_running:  # a heartbeat thread starts once
                super().start_channels(*args, **kwargs)

        async def wait_for_ready(self, timeout: float | None = None) -> None:
            if not self.ready:
                await self._async_wait_for_ready(timeout=timeout)
                self.ready = True

    class WarmKernelManager(AsyncKernelManager):
        prepared: Any = None

        async def _async_finish_shutdown(self, waittime=None, pollinterval=0.1, restart=False) -> None:
            # The graceful shutdown as jupyter_client does it (interrupt, shutdown request, the same
            # waits before SIGTERM and SIGKILL), looking every 10 ms instead of every 100 ms for the
            # kernel to have exited: a run ends when its kernel has.
            await super()._async_finish_shutdown(waittime, min(pollinterval, 0.01), restart)

        def client(self, **kwargs):
            if self.prepared is not None:
                kc, self.prepared = self.prepared, None
                return kc
            return super().client(**kwargs)

    return WarmClient, WarmKernelManager


async def _prepare_client(km, client_class) -> None:
    km.client_factory = client_class
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    km.prepared = kc


def kernel_code(env: dict) -> str:
    """The code that gives the kernel the run's variables (os.environ and the marks in /proc), in a
    namespace of its own: nothing is bound in the user's."""
    body = REWRITE_SOURCE + (f"\nif not set({MARKS!r}) <= rewrite({{n: values.get(n, '') for n in {MARKS!r}}}):\n"
                             "    raise RuntimeError('the run marks were not written')\n"
                             "__import__('os').environ.update(values)\n")
    return f"exec({body!r}, {{'values': {json.dumps(env)}}})"


async def _set_environment(kc, env: dict) -> bool:
    # silent and not stored: no execution count, no output
    msg_id = kc.execute(kernel_code(env), silent=True, store_history=False)
    while True:
        reply = await kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    while True:  # its busy/idle on IOPub, so the run's client reads only the run's messages
        message = await kc.get_iopub_msg(timeout=60)
        if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "status" \
                and message["content"].get("execution_state") == "idle":
            break
    return reply["content"]["status"] == "ok"


class WarmKernel:
    """A kernel started as nbclient starts one for Papermill, waiting for its run."""

    def __init__(self, km: Any, kernel_name: str, cwd: str):
        self.km = km
        self.kernel_name = kernel_name
        self.cwd = cwd

    @classmethod
    def start(cls, hint: dict, home: str) -> "WarmKernel":
        import nbformat
        import papermill  # noqa: F401 - what every run imports, paid before the run
        import papermill.clientwrap  # noqa: F401
        from nbclient import NotebookClient

        from jupyter_core.utils import run_sync

        options = RunOptions(kernel_name=hint.get("kernel") or DEFAULT_KERNEL, cwd=hint.get("cwd") or None,
                             input_path=hint.get("input_path") or "")
        cwd = kernel_directory(options, home)
        client_class, manager_class = _kernel_classes()
        client = NotebookClient(nbformat.v4.new_notebook(), kernel_name=options.kernel_name,
                                kernel_manager_class=manager_class,
                                config=Config(kernel_manager_config(os.environ)))  # the run's private sockets
        client.km = client.create_kernel_manager()
        env = {name: value for name, value in os.environ.items() if name not in STANDBY_VARIABLES}
        # nbclient's own start (its arguments, e.g. the in-memory history); Papermill's chdir(cwd) is cwd here
        client.start_new_kernel(cwd=cwd, env=env)
        run_sync(_prepare_client)(client.km, client_class)
        return cls(client.km, client.kernel_name, cwd)

    def matches(self, kernel_name: str | None, cwd: str) -> bool:
        return kernel_name == self.kernel_name and cwd == self.cwd and self.alive()

    def alive(self) -> bool:
        from jupyter_core.utils import run_sync

        try:
            return bool(run_sync(self.km.is_alive)())
        except Exception:  # noqa: BLE001 - a kernel we cannot ask is not one to run in
            return False

    def set_environment(self, env: dict) -> bool:
        """The run's variables in the kernel's os.environ, as a cold run's kernel inherits them."""
        from jupyter_core.utils import run_sync

        try:
            return bool(run_sync(_set_environment)(self.km.prepared, env))
        except Exception as error:  # noqa: BLE001 - the run starts a kernel of its own instead
            print(f"gpulab: the standby's kernel did not take the run's variables ({error})", file=sys.stderr, flush=True)
            return False

    def shutdown(self, now: bool) -> None:
        """Stop the kernel: `now` kills it; else nbclient's graceful shutdown at the end of a run."""
        from jupyter_core.utils import run_sync

        async def stop() -> None:
            if await self.km.is_alive():
                await self.km.shutdown_kernel(now=now)

        try:
            run_sync(stop)()
        except Exception as error:  # noqa: BLE001 - the scheduler's clean-up kills what is left
            print(f"gpulab: could not stop the standby's kernel ({error})", file=sys.stderr, flush=True)


def next_run(url: str, token: str, wait: float) -> dict | None:
    """The run the scheduler hands this standby (its variables), or None: stop."""
    request = urllib.request.Request(url + "next", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=wait + 60) as response:
            answer = json.loads(response.read())
    except Exception as error:  # noqa: BLE001 - the scheduler went away or refused: nothing to run
        print(f"gpulab: standby stops: {error}", file=sys.stderr, flush=True)
        return None
    env = answer.get("env")
    return env if isinstance(env, dict) else None


def standby(run) -> int:
    """A standby's life: warm up, wait for a run, run it with `run(warm)` (runner.main)."""
    url, token = os.environ[URL_VARIABLE], os.environ.get("GPULAB_STANDBY_TOKEN", "")
    hint = json.loads(os.environ.get("GPULAB_STANDBY_HINT") or "{}")
    wait = float(os.environ.get("GPULAB_STANDBY_WAIT") or 600)
    for name in STANDBY_VARIABLES:  # not for what the run starts (a job's command, the kernel)
        os.environ.pop(name, None)
    warm: WarmKernel | None
    try:
        warm = WarmKernel.start(hint, os.environ.get("HOME") or os.getcwd())
    except Exception as error:  # noqa: BLE001 - a run handed over starts its own kernel
        print(f"gpulab: the standby could not start a kernel ({error})", file=sys.stderr, flush=True)
        warm = None
    env = next_run(url, token, wait)
    if env is None:
        if warm is not None:
            warm.shutdown(now=True)
        return 0
    if not mark_as_run(env):  # never run unmarked: it ends before taking the run, which starts again cold
        print("gpulab: the standby cannot carry the run's marks; the run starts again", file=sys.stderr, flush=True)
        if warm is not None:
            warm.shutdown(now=True)
        return 3
    os.environ.update(env)
    if warm is not None and not warm.set_environment(env):
        warm.shutdown(now=True)
        warm = None
    return run(warm)
