"""Warm kernels: a server forked by the zygote starts its Python kernels by fork, not exec.

A kernel started the usual way (jupyter_client's LocalProvisioner: `python -m ipykernel_launcher
-f FILE` in a new process) spends most of its start importing what the zygote has imported
already (IPython, zmq, jupyter_client, ...): ~0.3 s of CPU per kernel on 2 cores.

debugpy and its pydevd are not imported ahead (neither in the zygote nor in the template), although
they are ~35 ms of a forked kernel's ~100 ms of CPU: IPythonKernel imports them (ipykernel.debugger)
once the kernel's streams are ipykernel's, and their import binds pydevd's log and debugpy's
stderr log to the sys.stderr of that moment (the kernel's OutStream; imported ahead, the server's
log instead) and writes pydevd's frozen-modules warning to it; it also takes a thread name
(Thread-N), registers an exit handler, records the time and pid, sets sys.breakpointhook and adds
execfile and runfile to builtins (imported in the zygote: every server's too), and imports `thread`,
`django` and `java` when it finds them (the kernel's working folder is first on sys.path).

The kernel template: the server forked by the zygote (zygote.child), once it runs as its account
with its cgroups, environment and home, and before any of its threads or its event loop exist,
forks one more process, the template, and then runs the server. The template is the server's
own account in the server's cgroups: it holds nothing the server does not (it is a copy of the
server at that moment, and the spawn's request is already gone from it), runs no thread and no
event loop, and only waits on a socket pair whose other end is the server's (closed on exec, so
no kernel or terminal the server starts inherits it). It ends with the server (PR_SET_PDEATHSIG,
and when the pair closes). It shows as `python -m gpulab.spawner.backends.local.warm_kernel
template` in ps.

A kernel, per launch, from the server's provisioner (WarmKernelProvisioner, registered as
`gpulab-warm-kernel` under jupyter_client.kernel_provisioners and made the default, in the forked
server only): a new stream socket pair, one end passed to the template, which forks and keeps
its copy to report the kernel's exit status; the child (never the template) reads the launch
(the command, the complete environment, the working folder) and the kernel's stdin, stdout and
stderr descriptors, as Popen would set them, and becomes the kernel exactly as exec would: a new
session, the signal dispositions of a new interpreter, every other descriptor closed, the
working folder, the environment replaced by the launch's, /proc's command line and environment,
sys.argv and sys.path[0] as `python -m` sets them; then it imports ipykernel's application (only
now, so that what it reads from the environment at import, JPY_PARENT_PID, is the kernel's) and
runs `ipykernel_launcher` as __main__. The provisioner holds a Popen-like handle (ForkedKernel):
signals go to the kernel's process group as LocalProvisioner sends them, its exit status comes
from the template.

Anything this cannot reproduce exactly is started the usual way, by LocalProvisioner, with a line
in the server's log saying why (`cold_reason`): another command than this environment's
`python -m ipykernel_launcher -f FILE`, a variable Python or debugpy read at start, another HOME,
another value than the server's for a variable the C library reads at a process's start
(LD_LIBRARY_PATH, ...) or one the zygote's imports kept (import_environment.py: those it derives
again, the child derives from the kernel's environment), an independent kernel, a server not
forked by the zygote (no template).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from gpulab.compute.processes import drain, ended, exited_children, start_ticks

from gpulab.spawner.backends.local import import_environment
from gpulab.spawner.backends.local.warm_start import HEADER, MAX_REQUEST, PROCESS_START_VARIABLES, STARTUP_VARIABLES, VARIABLE

PROVISIONER_NAME = "gpulab-warm-kernel"
LAUNCHER = "ipykernel_launcher"
# Read by Python, debugpy or IPython when they start or are imported (the template has done both).
COLD_PREFIXES = ("PYTHON", "PYDEVD", "DEBUGPY", "IPYTHON")
HONOURED = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}  # zygote.as_new_interpreter
LAUNCH_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1

# The server's end of its template's socket pair; None in a server not forked by the zygote.
CHANNEL: socket.socket | None = None
TEMPLATE_PID = 0


class WarmKernelError(Exception):
    """This kernel cannot start warm; the message says why (it starts the usual way)."""


# ------------------------------------------------------------------ the server forked by the zygote


def start_template(zygote: Any) -> None:
    """Fork this server's kernel template (see the module's docstring); the zygote's helpers
    (show_as, reset_signals, close_descriptors_but, run_as_main) come in `zygote`. Call it in
    the zygote's child once it is the spawn, single-threaded, before the server runs."""
    global CHANNEL, TEMPLATE_PID
    server_end, template_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            server_end.detach()
            zygote.close_descriptors_but(template_end.fileno())
            code = serve_template(template_end, server_pid, zygote)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    template_end.close()
    CHANNEL, TEMPLATE_PID = server_end, pid
    make_default_provisioner()


def make_default_provisioner() -> None:
    """Kernels whose kernelspec names no provisioner get this module's, in this process only; a
    default set in the server's configuration or in JUPYTER_DEFAULT_PROVISIONER_NAME still wins."""
    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    def default(factory: KernelProvisionerFactory) -> str:
        return os.environ.get(factory.default_provisioner_name_env, PROVISIONER_NAME)

    # traitlets takes a trait's dynamic default from the class's `_NAME_default`, else from here
    KernelProvisionerFactory._default_provisioner_name_default = default  # type: ignore[assignment,method-assign]
    KernelProvisionerFactory._all_trait_default_generators["default_provisioner_name"] = default


# ------------------------------------------------------------------ the template


def serve_template(channel: socket.socket, server_pid: int, zygote: Any) -> int:
    """The template's loop: a kernel per message on `channel`, its exit status to its socket."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server_pid:
        return 0  # the server ended before the line above
    zygote.show_as([sys.executable, "-m", __name__, "template"], dict(os.environ))
    zygote.reset_signals()
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    kernels: dict[int, int] = {}  # pid -> the descriptor its exit status goes to
    while True:
        try:
            readable, _, _ = select.select([channel.fileno(), wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            drain(wake_read)
            reap(kernels)
        if channel.fileno() in readable:
            try:
                data, fds, _, _ = socket.recv_fds(channel, 16, 1)
            except OSError:
                return 0
            if not data:
                return 0  # the server is gone
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                kernel_child(fds[0], zygote)  # never returns
            kernels[pid] = fds[0]
            reap(kernels)


def reap(kernels: dict[int, int]) -> None:
    """Collect the kernels that exited; each one's status ("exit N", Popen's returncode) to its socket."""
    for pid, status in exited_children():
        fd = kernels.pop(pid, None)
        if fd is None:
            continue
        try:
            os.set_blocking(fd, False)
            os.write(fd, f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)


# ------------------------------------------------------------------ the kernel, forked by the template


def kernel_child(fd: int, zygote: Any) -> None:
    """Become the kernel the request on `fd` describes, then run it. Never returns."""
    conn = None
    try:
        os.setsid()
        zygote.reset_signals()
        zygote.close_descriptors_but(fd)  # the template's pair, wake-up pipe, other kernels' sockets
        conn = socket.socket(fileno=fd)
        conn.sendall(f"pid {os.getpid()}\n".encode())
        argv, env, cwd, fds = receive_launch(conn)
        reason = cold_reason(argv, env, os.environ)
        if reason is not None:
            raise WarmKernelError(reason)
        if "ipykernel.kernelapp" in sys.modules:
            raise WarmKernelError("ipykernel's application was imported before the kernel's environment was set")
        if len(fds) != 3:
            raise WarmKernelError("a launch brings three descriptors: the kernel's stdin, stdout and stderr")
        for target, source in enumerate(fds):
            os.dup2(source, target)
        for source in fds:
            os.close(source)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        zygote.show_as(argv, env)
        import_environment.derive_again()
        fresh_kernel_state(argv, cwd, zygote)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the template ends with the server
        conn.sendall(b"ok\n")
        conn.close()
    except BaseException as exc:
        try:
            if conn is not None:
                conn.sendall(f"error: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(1)
    os._exit(run_kernel(zygote))


def fresh_kernel_state(argv: list[str], cwd: str, zygote: Any) -> None:
    """What `python -m ipykernel_launcher ...` started in `cwd` would have: sys.argv before runpy
    sets its first item, the working folder first on sys.path, a fresh __main__."""
    import types

    zygote.as_new_interpreter(argv)
    sys.argv = ["-m", *argv[3:]]
    sys.path.insert(0, cwd)
    sys.modules["__main__"] = types.ModuleType("__main__")
    gc.collect()


def run_kernel(zygote: Any) -> int:
    """`python -m ipykernel_launcher`, in this process; the exit status."""
    import runpy

    return zygote.run_as_main(lambda: runpy._run_module_as_main(LAUNCHER, alter_argv=True))  # type: ignore[attr-defined]


# ------------------------------------------------------------------ the launch, both sides


def cold_reason(argv: list[str], env: dict[str, str], template_env: Any) -> str | None:
    """Why the template cannot start this kernel exactly as exec would, or None (pure)."""
    if argv[:1] != [sys.executable] or argv[1:3] != ["-m", LAUNCHER] or len(argv) != 5 or argv[3] != "-f":
        return f"the command is {argv[:3]}, not {sys.executable} -m {LAUNCHER} -f FILE"
    for name in env:
        if name.startswith(COLD_PREFIXES) and name not in HONOURED:
            return f"{name} is set (read when Python or the debugger starts)"
    for name in STARTUP_VARIABLES:
        if env.get(name):
            return f"{name} is set"
    for name in env.keys() | template_env.keys():
        if PROCESS_START_VARIABLES.match(name) and env.get(name) != template_env.get(name):
            return f"{name} is not the server's (read when a process starts)"
    if env.get("HOME") != template_env.get("HOME"):
        return "HOME is not the server's"
    return import_environment.cold_reason(env, template_env, import_environment.READ_AT_IMPORT)


def encode_launch(argv: list[str], env: dict[str, str], cwd: str) -> bytes:
    payload = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
    if len(payload) > MAX_REQUEST:
        raise WarmKernelError(f"the launch is {len(payload)} bytes, over {MAX_REQUEST}")
    return HEADER.pack(len(payload)) + payload


def decode_launch(payload: bytes) -> tuple[list[str], dict[str, str], str]:
    data = json.loads(payload)
    if not isinstance(data, dict) or set(data) != {"argv", "env", "cwd"}:
        raise WarmKernelError("a launch is an object with exactly argv, env and cwd")
    argv, env, cwd = data["argv"], data["env"], data["cwd"]
    if not (isinstance(argv, list) and all(isinstance(a, str) and "\0" not in a for a in argv)):
        raise WarmKernelError("argv must be a list of texts")
    if not (isinstance(env, dict) and all(isinstance(v, str) and "\0" not in v and VARIABLE.match(k)
                                          for k, v in env.items())):
        raise WarmKernelError("env must be an object of variables")
    if not (isinstance(cwd, str) and cwd.startswith("/") and "\0" not in cwd):
        raise WarmKernelError("cwd must be an absolute path")
    return argv, env, cwd


def receive_launch(conn: socket.socket) -> tuple[list[str], dict[str, str], str, list[int]]:
    conn.settimeout(LAUNCH_TIMEOUT)
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    buffer = bytearray(data)
    while len(buffer) < HEADER.size or len(buffer) < HEADER.size + HEADER.unpack_from(buffer)[0]:
        if len(buffer) >= HEADER.size and HEADER.unpack_from(buffer)[0] > MAX_REQUEST:
            raise WarmKernelError("the launch is too long")
        chunk = conn.recv(65536)
        if not chunk:
            raise WarmKernelError("the launch ended early")
        buffer += chunk
    (length,) = HEADER.unpack_from(buffer)
    return (*decode_launch(bytes(buffer[HEADER.size:HEADER.size + length])), fds)


class ForkedKernel:
    """A kernel forked by the template, as LocalProvisioner uses a Popen: pid, stdin, poll, wait,
    send_signal, kill, terminate, returncode. Its exit status comes from the template on `sock`."""

    stdout = None
    stderr = None

    def __init__(self, pid: int, sock: socket.socket, stdin: Any):
        self.pid = pid
        self.sock = sock
        self.stdin = stdin
        self.ticks = start_ticks(pid)
        self.returncode: int | None = None
        self._buffer = b""

    def _read(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        try:
            chunk = self.sock.recv(4096)
        except BlockingIOError:
            return
        if chunk:
            self._buffer += chunk
            for line in self._buffer.decode(errors="replace").splitlines():
                if line.startswith("exit "):
                    self.returncode = int(line.split()[1])
                    self.sock.close()
        elif ended(self.pid, self.ticks):  # a zombie too: with the template gone, init reaps it when it will
            self.returncode = -signal.SIGKILL  # the template died (killed with the server): so did its kernels
            self.sock.close()

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0)
            self._read(0.1 if left is None else min(left, 0.1))
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


async def fork_kernel(argv: list[str], env: dict[str, str], cwd: str) -> ForkedKernel:
    """Ask this server's template for a kernel: its handle once it runs (WarmKernelError if not)."""
    if CHANNEL is None:
        raise WarmKernelError("this server was not forked by the zygote (no kernel template)")
    loop = asyncio.get_running_loop()
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
    pid = 0
    try:
        try:
            socket.send_fds(CHANNEL, [b"k"], [theirs.fileno()])
        except OSError as exc:
            raise WarmKernelError(f"the kernel template is gone ({exc})") from None
        finally:
            theirs.close()
        data = encode_launch(argv, env, cwd)
        socket.send_fds(mine, [data[:4096]], [stdin_read, sys.stdout.fileno(), sys.stderr.fileno()])
        os.close(stdin_read)
        stdin_read = -1
        mine.setblocking(False)
        if len(data) > 4096:
            await loop.sock_sendall(mine, data[4096:])
        answer = b""
        deadline = loop.time() + LAUNCH_TIMEOUT
        while not any(line.startswith((b"ok", b"error", b"exit")) for line in answer.splitlines(keepends=True)
                      if line.endswith(b"\n")):
            chunk = await asyncio.wait_for(loop.sock_recv(mine, 4096), max(deadline - loop.time(), 0.01))
            if not chunk:
                break
            answer += chunk
            if not pid and answer.startswith(b"pid ") and b"\n" in answer:
                pid = int(answer[4:answer.index(b"\n")])
        text = answer.decode(errors="replace")
        if not pid or "ok" not in text.splitlines():
            error = next((line for line in text.splitlines() if line.startswith(("error", "exit"))), "no answer")
            raise WarmKernelError(f"the kernel template's child failed: {error.removeprefix('error: ')}")
        kernel = ForkedKernel(pid, mine, open(stdin_write, "wb", buffering=0))
        stdin_write = -1
        return kernel
    except asyncio.TimeoutError:
        raise WarmKernelError(f"the kernel did not start within {LAUNCH_TIMEOUT:.0f} s") from None
    except BaseException:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        mine.close()
        raise
    finally:
        for fd in (stdin_read, stdin_write):
            if fd >= 0:
                os.close(fd)


class WarmKernelProvisioner(LocalProvisioner):
    """LocalProvisioner that forks a Python kernel from the server's kernel template when it can
    start it exactly as exec would, and starts it the usual way otherwise (see the module)."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        scrubbed = LocalProvisioner._scrub_kwargs(kwargs)
        env = dict(scrubbed.get("env") or os.environ)
        cwd = str(scrubbed.get("cwd") or os.getcwd())
        argv = [os.path.expanduser(part) for part in cmd]
        others = set(scrubbed) - {"env", "cwd", "independent"}
        if CHANNEL is None:
            reason: str | None = "no kernel template in this server"
        elif scrubbed.get("independent"):
            reason = "an independent kernel"
        elif others:
            reason = f"launched with {sorted(others)}"
        else:
            env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launch_kernel sets it
            reason = cold_reason(argv, env, os.environ)
        kernel = None
        if reason is None:
            try:
                kernel = await fork_kernel(argv, env, cwd)
            except (WarmKernelError, OSError) as exc:
                reason = str(exc)
        if kernel is None:
            if CHANNEL is not None:
                self.log.info("Starting kernel %s the usual way: %s", self.kernel_id, reason)
            return await super().launch_kernel(cmd, **kwargs)
        self.log.debug("Kernel %s forked from the kernel template: pid %i", self.kernel_id, kernel.pid)
        self.process = kernel  # type: ignore[assignment]  # what LocalProvisioner uses of a Popen, it has
        try:
            self.pgid = os.getpgid(kernel.pid)
        except OSError:
            self.pgid = None
        self.pid = kernel.pid
        self.cwd = cwd
        return self.connection_info
