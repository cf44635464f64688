"""Warm start of local servers: the zygote protocol, and the hub's side of it.

A cold start runs `jupyterhub-singleuser` in a new interpreter, which spends most of its start
importing jupyter_server, JupyterLab and the server extensions. A warm start asks a "zygote"
(zygote.py: one process per Python environment, started by the hub as root, that has imported
all of that once and then only waits) to fork; the child becomes the spawn's identity and runs
the same entry point with the same arguments.

What passes, per spawn, over the zygote's Unix socket (in a folder only the hub's user can
enter; the zygote also checks the peer's uid): one request, a 4-byte length then JSON (argv,
the complete environment, the account, its home, the cgroups to join), with the two
descriptors the server's output goes to (its log file, as the cold path's, opened by the hub).
The zygote forks *before* reading it: only the child ever holds the spawn's environment and
token, so nothing of one spawn stays in the zygote for the next. The child answers on a pipe
once it runs as the account ("ok", or why not); the zygote then answers the hub with the
child's pid and start ticks (see gpulab.compute.processes), which poll and stop use as they do
a cold server's, also after a hub restart.

Whatever goes wrong here (no zygote yet, an environment without jupyterhub, a spawn the zygote
cannot reproduce exactly: `cold_reason`) is a WarmStartError, and the spawner starts the server
cold instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpulab.spawner.backends.local import import_environment

ENTRY_POINT = "jupyterhub-singleuser"
MAX_REQUEST = 1 << 20  # bytes of JSON
MAX_ARGS = 512
HEADER = struct.Struct("!I")
# The zygote is started with this much room in its own arguments and environment, which its children
# overwrite with theirs (zygote.show_as); a spawn whose do not fit starts cold.
ARGUMENT_ROOM = 16 * 1024
ENVIRONMENT_ROOM = 96 * 1024
ROOM_VARIABLE = "GPULAB_ZYGOTE_ROOM"
# The zygote's HOME while it imports: a path that never exists, so a module that computes a path
# from the home at import (JupyterLab's user-settings folder, send2trash's trash, jupyter-server-
# fileid's database) is found afterwards by this prefix and given the account's home in the child
# (zygote.give_home); and the zygote has no user site (~/.local) of its own.
HOME_SENTINEL = "/nonexistent/gpulab-zygote-home"
CGROUP_ROOT = "/sys/fs/cgroup/"
ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
VARIABLE = re.compile(r"^[^=\0]+$")
# Read by Python or jupyterhub.singleuser when the interpreter starts or the module is imported:
# the zygote has done both already, so a spawn that sets them is started cold.
# Paths that modules compute at import from these (the zygote gives its imports only the account's
# home, see HOME_SENTINEL) are read as well.
STARTUP_VARIABLES = ("JUPYTERHUB_SINGLEUSER_EXTENSION", "JUPYTERHUB_SINGLEUSER_APP", "JUPYTER_DATA_DIR",
                     "JUPYTER_CONFIG_DIR", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_PREFER_ENV_PATH",
                     "JUPYTER_PLATFORM_DIRS", "JUPYTER_NO_CONFIG", "XDG_DATA_HOME", "XDG_CONFIG_HOME",
                     "XDG_CACHE_HOME")
PYTHON_VARIABLES_HONOURED = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}  # zygote.as_new_interpreter
# Read by the dynamic loader and the C library when a process starts (the zygote's start): a
# forked server would load libraries without the spawn's LD_LIBRARY_PATH, say.
PROCESS_START_VARIABLES = re.compile(r"^(LD_[A-Z_]+|GLIBC_TUNABLES|MALLOC_[A-Z_]+)$")
# Read by gettext as modules are imported: the zygote imports with those of the hub's that every
# spawn gets too (Spawner.env_keep: LANG and LC_ALL by default), so such a spawn is forked
# (import_environment.py); see language_kept.
LANGUAGE_VARIABLES = ("LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES")


class WarmStartError(Exception):
    """The warm path cannot start this server; the message says why (the cold path will)."""


class RequestError(ValueError):
    """A request the zygote refuses: not what the hub sends."""


@dataclass(frozen=True)
class SpawnRequest:
    argv: tuple[str, ...]
    env: dict[str, str]
    account: str  # "" when gpulab does not run as root (no identity change)
    home: str
    cgroups: tuple[str, ...] = ()

    def encode(self) -> bytes:
        payload = json.dumps({"argv": list(self.argv), "env": self.env, "account": self.account,
                              "home": self.home, "cgroups": list(self.cgroups)}).encode()
        if len(payload) > MAX_REQUEST:
            raise WarmStartError(f"the spawn request is {len(payload)} bytes, over {MAX_REQUEST}")
        return HEADER.pack(len(payload)) + payload


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise RequestError(f"{what} must be text without NUL")
    return value


def _absolute(value: Any, what: str) -> str:
    path = _text(value, what)
    if not path.startswith("/") or ".." in path.split("/"):
        raise RequestError(f"{what} must be an absolute path without '..': {path!r}")
    return path


def decode_request(payload: bytes) -> SpawnRequest:
    """The request in `payload` (the JSON after the length), checked field by field (pure)."""
    if len(payload) > MAX_REQUEST:
        raise RequestError(f"request of {len(payload)} bytes, over {MAX_REQUEST}")
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise RequestError(f"not JSON: {exc}") from None
    fields = {"argv", "env", "account", "home", "cgroups"}
    if not isinstance(data, dict) or set(data) != fields:
        raise RequestError(f"a request is an object with exactly {sorted(fields)}")
    argv = data["argv"]
    if not isinstance(argv, list) or not 1 <= len(argv) <= MAX_ARGS:
        raise RequestError(f"argv must be a list of 1 to {MAX_ARGS} arguments")
    argv = [_text(arg, "each argument") for arg in argv]
    if os.path.basename(argv[0]) != ENTRY_POINT:
        raise RequestError(f"argv[0] must be {ENTRY_POINT}, not {argv[0]!r}")
    env = data["env"]
    if not isinstance(env, dict):
        raise RequestError("env must be an object of variables")
    for name, value in env.items():
        if not VARIABLE.match(name):
            raise RequestError(f"not a variable name: {name!r}")
        _text(value, f"variable {name}")
    account = _text(data["account"], "account")
    if account and not ACCOUNT.match(account):
        raise RequestError(f"not an account name: {account!r}")
    home = _absolute(data["home"], "home")
    cgroups = data["cgroups"]
    if not isinstance(cgroups, list):
        raise RequestError("cgroups must be a list of folders")
    for folder in cgroups:
        if not _absolute(folder, "a cgroup").startswith(CGROUP_ROOT):
            raise RequestError(f"a cgroup must be under {CGROUP_ROOT}: {folder!r}")
    return SpawnRequest(tuple(argv), dict(env), account, home, tuple(cgroups))


def cold_reason(cmd: list[str], shell_cmd: list[str], env: dict[str, str]) -> str | None:
    """Why a zygote cannot start this spawn exactly as the cold path would, or None (pure)."""
    if shell_cmd:
        return "Spawner.shell_cmd is set"
    if not cmd or os.path.basename(cmd[0]) != ENTRY_POINT:
        return f"the command is {cmd[:1]}, not {ENTRY_POINT}"
    for name in STARTUP_VARIABLES:
        if env.get(name):
            return f"{name} is set"
    for name in env:
        if name.startswith("PYTHON") and name not in PYTHON_VARIABLES_HONOURED:
            return f"{name} is set (read when Python starts)"
        if PROCESS_START_VARIABLES.match(name):
            return f"{name} is set (read when a process starts)"
    return None


def language_kept(hub_environment: dict[str, str], env_keep: list[str]) -> dict[str, str]:
    """The hub's language variables that every spawn inherits through `env_keep` (pure)."""
    return {name: hub_environment[name] for name in LANGUAGE_VARIABLES if name in hub_environment and name in env_keep}


def extensions_enabled_by(args: list[str]) -> list[str]:
    """The server extensions a server's arguments enable (`--ServerApp.jpserver_extensions=NAME=True`):
    the zygote imports them too (pure)."""
    prefix = "--ServerApp.jpserver_extensions="
    named = [arg[len(prefix):].rpartition("=") for arg in args if arg.startswith(prefix)]
    return [name for name, _, value in named if value.lower() == "true" and re.match(r"^[A-Za-z_][\w.]*$", name)]


def interpreter_of(script: Path) -> str | None:
    """The Python a console script (`jupyterhub-singleuser`) runs in: its #! line, when that is
    one absolute path (pip writes a /bin/sh trampoline for long paths: None)."""
    try:
        with open(script, "rb") as source:
            first = source.readline(4096)
    except OSError:
        return None
    parts = first[2:].split() if first.startswith(b"#!/") else []
    if len(parts) != 1 or b"python" not in Path(parts[0].decode(errors="replace")).name.encode():
        return None
    return parts[0].decode()


# ------------------------------------------------------------------ the socket, both sides


def send_request(sock: socket.socket, request: SpawnRequest, fds: list[int]) -> None:
    data = request.encode()
    sent = socket.send_fds(sock, [data], fds)
    if sent < len(data):
        sock.sendall(data[sent:])


def receive_request(sock: socket.socket) -> tuple[bytes, list[int]]:
    """The request's JSON and the descriptors that came with it (the zygote's child)."""
    data, fds, _, _ = socket.recv_fds(sock, 65536, 2)
    buffer = bytearray(data)
    while len(buffer) < HEADER.size:
        chunk = sock.recv(65536)
        if not chunk:
            raise RequestError("the request ended early")
        buffer += chunk
    (length,) = HEADER.unpack_from(buffer)
    if length > MAX_REQUEST:
        raise RequestError(f"request of {length} bytes, over {MAX_REQUEST}")
    while len(buffer) < HEADER.size + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RequestError("the request ended early")
        buffer += chunk
    return bytes(buffer[HEADER.size:HEADER.size + length]), fds


def encode_reply(reply: dict) -> bytes:
    return json.dumps(reply).encode() + b"\n"


def decode_reply(data: bytes) -> tuple[int, int]:
    """(pid, start ticks) from the zygote's answer; WarmStartError with its reason otherwise."""
    try:
        reply = json.loads(data)
    except ValueError:
        raise WarmStartError(f"the zygote answered {data[:200]!r}") from None
    if not isinstance(reply, dict):
        raise WarmStartError(f"the zygote answered {reply!r}")
    if "error" in reply:
        raise WarmStartError(f"the zygote refused: {reply['error']}")
    pid, ticks = reply.get("pid"), reply.get("start_ticks")
    if not isinstance(pid, int) or not isinstance(ticks, int) or pid <= 1:
        raise WarmStartError(f"the zygote answered {reply!r}")
    return pid, ticks


# ------------------------------------------------------------------ the hub's side


class Zygote:
    """One environment's zygote, as the hub sees it: started on first use, asked to fork."""

    def __init__(self, python: str, entry_point: str, extensions: tuple[str, ...] = (), start_timeout: float = 60,
                 language: dict[str, str] | None = None):
        self.python = python
        self.entry_point = entry_point
        self.extensions = extensions
        self.language = language or {}  # its language variables: language_kept's
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.folder: Path | None = None
        self._starting: asyncio.Future | None = None
        self.failure = ""  # why it could not start: not tried again (every spawn would pay for it)
        self.environment: dict[str, str] = {}  # what its imports saw (HOME aside: see HOME_SENTINEL)
        self.read_at_import: frozenset[tuple[str, str]] = frozenset()  # (variable, module), from its "ready"

    @property
    def socket_path(self) -> Path:
        assert self.folder is not None
        return self.folder / "zygote.sock"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None and self._starting is None

    async def ensure_started(self) -> None:
        """Start the zygote unless it runs; wait until it listens (WarmStartError if it cannot)."""
        if self.process is not None and self.process.poll() is None and self._starting is None:
            return
        if self.failure:
            raise WarmStartError(self.failure)
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        finally:
            if starting.done() and self._starting is starting:
                self._starting = None

    async def _start(self) -> None:
        self.close()
        # A folder only the hub's user can enter (mkdtemp: 0700) holds the socket.
        self.folder = Path(tempfile.mkdtemp(prefix="gpulab-zygote-"))
        environment = {"PATH": f"{Path(self.python).parent}{os.pathsep}/usr/bin:/bin", "HOME": HOME_SENTINEL,
                       **self.language}
        self.environment = dict(environment)
        environment[ROOM_VARIABLE] = " " * ENVIRONMENT_ROOM
        self.process = subprocess.Popen(
            # No interpreter flags: sys.flags stay with every server and kernel forked from it, and
            # multiprocessing's spawn passes them on to its workers (-E -s would drop PYTHONPATH and the
            # user's site there; -I's -P would keep IPython from putting the working folder on a
            # kernel's sys.path). The environment above has no PYTHON* variable, and its HOME no user
            # site; the zygote takes its working folder, "/", off sys.path itself.
            # The entry point's name is in its command line, which its children show until theirs is set.
            [self.python, "-m", "gpulab.spawner.backends.local.zygote", str(self.socket_path), self.entry_point,
             " " * ARGUMENT_ROOM, *self.extensions],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd="/",
            start_new_session=True,  # the hub's terminal's signals are the hub's
        )
        stdout = self.process.stdout
        assert stdout is not None
        loop = asyncio.get_running_loop()
        try:
            line = await asyncio.wait_for(loop.run_in_executor(None, stdout.readline), self.start_timeout)
        except asyncio.TimeoutError:
            self.close()
            raise WarmStartError(f"the zygote of {self.python} was not ready after {self.start_timeout:.0f} s") from None
        word, _, read = line.strip().partition(b" ")
        if word != b"ready":
            status = self.process.wait(5) if self.process.poll() is None else self.process.returncode
            self.close()
            self.failure = (f"the zygote of {self.python} exited with {status} while starting (more in the hub's "
                            f"log): {line.decode(errors='replace').strip()}")
            raise WarmStartError(self.failure)
        self.read_at_import = frozenset((name, module) for name, module in json.loads(read or b"[]"))

    async def spawn(self, request: SpawnRequest, stdout_fd: int, stderr_fd: int, timeout: float = 30) -> tuple[int, int]:
        """Fork a server for `request`: (pid, start ticks) once it runs as its account."""
        await self.ensure_started()
        reason = import_environment.cold_reason(request.env, self.environment, self.read_at_import)
        if reason is not None:
            raise WarmStartError(reason)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._ask, request, [stdout_fd, stderr_fd], timeout)

    def _ask(self, request: SpawnRequest, fds: list[int], timeout: float) -> tuple[int, int]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                send_request(sock, request, fds)
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
        except OSError as exc:
            status = self.process.poll() if self.process is not None else None
            raise WarmStartError(f"the zygote of {self.python} did not answer ({exc}"
                                 + (f"; it exited with {status})" if status is not None else ")")) from None
        return decode_reply(answer)

    def close(self) -> None:
        """Stop the zygote (the servers it started keep running) and remove its folder."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
