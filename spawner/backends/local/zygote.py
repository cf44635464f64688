"""The zygote: one per Python environment, run by the hub (`python -m gpulab.spawner.backends.local.zygote
SOCKET`) as the hub's user, root when servers get accounts. warm_start.py describes the protocol.

It imports what every server imports (jupyterhub.singleuser, jupyter_server, JupyterLab and the
enabled server extensions), says "ready" on its output with what those imports read from the
environment (import_environment.py), and then only accepts connections on
SOCKET and follows the children it forked until each says it runs as its account (spawns set
themselves up side by side: the zygote forks and goes back to its loop). It runs no event loop
and no thread, so a fork copies one quiet thread. Its environment is what the hub gives it: PATH,
a HOME that does not exist, the hub's language variables that spawns inherit (no hub secret, no
PYTHON* variable). It reads no spawn's request itself: the child does, after the fork.
It exits when its input closes (the hub is gone); the servers it started keep running.

The child, per spawn: a new session; the signal dispositions of a new interpreter; the request
read and checked; output to the descriptors that came with it, input from /dev/null; every
other descriptor closed (the listening socket, the connection, anything imported code opened);
the cgroups and the account (identity.py, the cold path's step); the environment replaced by
the spawn's, exactly; then "ok" to the zygote and `jupyterhub-singleuser`'s main with the
spawn's arguments, in this process.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import json
import locale
import logging
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__" and sys.path and sys.path[0] == os.getcwd():
    del sys.path[0]  # `python -m` put the working folder ("/") first: imports come from the environment only

from gpulab.spawner.backends.local import import_environment  # noqa: E402

# What every import from here on reads from the environment (jupyter_client's and jupyter_core's
# too, which this module's own imports bring), until serve() has imported the rest.
RECORDER = import_environment.start_recording() if __name__ == "__main__" else None

from gpulab.compute.processes import drain, exited_children, start_ticks  # noqa: E402

from gpulab.spawner.backends.local import warm_kernel  # noqa: E402
from gpulab.spawner.backends.local.identity import become_step  # noqa: E402
from gpulab.spawner.backends.local.warm_start import (  # noqa: E402
    HOME_SENTINEL, RequestError, cold_reason, decode_request, encode_reply, receive_request,
)

# What a server imports only while it initializes and answers its first requests (its handler
# modules, what its extensions import lazily: nbconvert, IPython, asyncssh for the SSH endpoint,
# httpx's transport), measured as the modules a forked server had that the zygote had not: about
# 0.2 s of CPU per spawn, paid once here instead. Plain module imports, as any server's: what they
# compute from the home is found and rewritten like the rest (home_dependent). Best effort: a
# module missing from an environment is imported (or not) by its servers as before.
LATE_IMPORTS = (
    "jupyter_server.services.api.handlers", "jupyter_server.services.config.handlers",
    "jupyter_server.services.contents.handlers", "jupyter_server.services.events.handlers",
    "jupyter_server.services.kernels.handlers", "jupyter_server.services.kernelspecs.handlers",
    "jupyter_server.services.nbconvert.handlers", "jupyter_server.services.security.handlers",
    "jupyter_server.services.sessions.handlers", "jupyter_server.services.shutdown",
    "jupyter_server.kernelspecs.handlers", "jupyter_server.nbconvert.handlers", "jupyter_server.view.handlers",
    "jupyter_scheduler.executors", "jupyter_scheduler.job_files_manager", "jupyter_scheduler.parameterize",
    "nbconvert", "nbclient", "IPython", "ipykernel.kernelspec", "jupyterlab_pygments", "jupyter_core.migrate",
    "jupyter_lsp.virtual_documents_shadow", "httpcore", "sqlalchemy.dialects.sqlite", "tornado.platform.asyncio",
    "gpulab.extensions.ssh.endpoint", "gpulab.extensions.tensorboard.extension", "gpulab.extensions.tensorboard.launcher",
    "gpulab.extensions.mlflow.launcher", "gpulab.spawner.singleuser.launcher", "gpulab.hub_config.registry",
    "jinja2.ext", "html.parser", "webbrowser", "codeop", "getopt", "encodings.utf_16_le", "encodings.utf_16_be",
)
CHILD_SETUP_TIMEOUT = 30.0  # seconds the zygote waits for a child to say it runs as its account
PR_SET_DUMPABLE = 4


def show_as(argv: list[str], env: dict[str, str]) -> None:
    """Make /proc/<pid>/cmdline and /proc/<pid>/environ show `argv` and `env`, as they would for a
    process exec'd with them, so that ps, psutil's environ() and the like read this server's and
    not the zygote's. They show the memory the kernel put the zygote's own arguments and variables
    in; the hub starts the zygote with room to spare in both (ROOM_VARIABLE, a long last argument),
    and the child writes its own there: the rest of the arguments' room is one last argument of
    blanks, the rest of the variables' zeros (readers stop at two). Call after os.environ is replaced: the C
    library's copy of the variables points into that memory until then."""
    with open("/proc/self/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    arg_start, arg_end, env_start, env_end = (int(f) for f in fields[45:49])
    arg_text = b"".join(a.encode() + b"\0" for a in argv)
    env_text = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()) + b"\0"
    if len(arg_text) > arg_end - arg_start or len(env_text) > env_end - env_start:
        raise OSError(f"the spawn's arguments ({len(arg_text)} bytes) or environment ({len(env_text)} bytes) do "
                      f"not fit the room the zygote has ({arg_end - arg_start}, {env_end - env_start})")
    room = arg_end - arg_start
    if len(arg_text) < room:  # the rest as one blank argument (zeros would read as thousands of empty ones)
        arg_text += b" " * (room - len(arg_text) - 1) + b"\0"
    ctypes.memmove(arg_start, arg_text, room)
    ctypes.memmove(env_start, env_text.ljust(env_end - env_start, b"\0"), env_end - env_start)


def preimport(extensions: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Import what a server imports while it starts; the names that failed (best effort, except
    jupyterhub.singleuser itself, whose ImportError ends the zygote: the hub starts cold)."""
    import jupyterhub.singleuser  # noqa: F401
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    failed = []
    manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
    enabled = sorted(n for n, on in manager.get_jpserver_extensions().items() if on)
    names = ["jupyterlab", *extensions, *enabled]
    for name in names:
        try:
            module = __import__(name, fromlist=["_"])
            points: list[dict] = getattr(module, "_jupyter_server_extension_points", lambda: [])()
            for point in points:
                if isinstance(point.get("module"), str):
                    __import__(point["module"], fromlist=["_"])
        except Exception:  # an extension that fails to import fails in the server too, with its log
            failed.append(name)
    for name in LATE_IMPORTS:
        try:
            __import__(name)
        except Exception:  # not installed here, or broken: the server imports it itself (or never)
            pass
    return failed


def _holds(value: Any, text: str, depth: int = 0) -> bool:
    if isinstance(value, str):
        return text in value
    if depth < 2 and isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds(item, text, depth + 1) for item in value)
    if depth < 2 and isinstance(value, dict):
        return any(_holds(item, text, depth + 1) for pair in value.items() for item in pair)
    return False


def rewritten(value: Any, old: str, new: str) -> Any:
    """`value` with `old` replaced by `new` in every text it holds (two levels deep)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(rewritten(item, old, new) for item in value)
    if isinstance(value, dict):
        return type(value)((rewritten(k, old, new), rewritten(v, old, new)) for k, v in value.items())
    return value


def home_dependent(text: str) -> list[tuple[Any, Any, bool]]:
    """Where imported code kept a value computed from the home: (container, name or key, by key).
    Module globals, traits' defaults, and traitlets' per-class copies of static defaults."""
    from traitlets import HasTraits

    found: list[tuple[Any, Any, bool]] = []
    for name, module in list(sys.modules.items()):
        if module is None or name in ("__main__", __name__):
            continue
        for attribute, value in list(vars(module).items()):
            if _holds(value, text):
                found.append((module, attribute, False))
            if not (isinstance(value, type) and issubclass(value, HasTraits) and value.__module__ == name):
                continue
            for trait in value.class_own_traits().values():
                if _holds(getattr(trait, "default_value", None), text):
                    found.append((trait, "default_value", False))
            statics = vars(value).get("_static_immutable_initial_values", {})
            found += [(statics, key, True) for key, default in statics.items() if _holds(default, text)]
    return found


def give_home(places: list[tuple[Any, Any, bool]], home: str, sentinel: str = HOME_SENTINEL) -> None:
    for target, name, by_key in places:
        if by_key:
            target[name] = rewritten(target[name], sentinel, home)
        else:
            setattr(target, name, rewritten(getattr(target, name), sentinel, home))


def peer_uid(conn: socket.socket) -> int:
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def reap() -> None:
    """Collect every child that exited (servers are the zygote's children until it exits)."""
    for _ in exited_children():
        pass


@dataclass
class Pending:
    """A child setting itself up: what it reports on its status pipe goes to the hub on `conn`."""

    pid: int
    conn: socket.socket
    deadline: float
    report: bytes = b""


def answer(pending: Pending, status: str) -> None:
    """Tell the hub how the child's setup went ("ok": its pid and ticks), and hang up."""
    with pending.conn:
        if status == "ok":
            pending.conn.sendall(encode_reply({"pid": pending.pid, "start_ticks": start_ticks(pending.pid) or 0}))
            return
        try:
            os.kill(pending.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pending.conn.sendall(encode_reply({"error": status.removeprefix("error: ") or "the child died while starting"}))


def handle(conn: socket.socket, home_places: list, pending: dict[int, Pending]) -> bool:
    """One spawn: fork, and leave the child to set itself up: its status pipe joins `pending`,
    answered when it reports (so spawns set themselves up side by side, not one after another).
    False when refused at once (the caller answered nothing more and closes `conn`)."""
    if peer_uid(conn) != os.geteuid():
        conn.sendall(encode_reply({"error": "only the hub's user may ask"}))
        return False
    if threading.active_count() != 1:
        conn.sendall(encode_reply({"error": "the zygote runs threads; it cannot fork safely"}))
        return False
    status_read, status_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        os.close(status_read)
        os.close(status_write)
        raise
    if pid == 0:
        os.close(status_read)
        child(conn, status_write, home_places)  # never returns
    os.close(status_write)
    pending[status_read] = Pending(pid, conn, time.monotonic() + CHILD_SETUP_TIMEOUT)
    return True


def follow(pending: dict[int, Pending], readable: list) -> None:
    """Read what children reported; answer those that finished (closed their pipe) or ran out of time."""
    for fd in [fd for fd in readable if fd in pending]:
        chunk = os.read(fd, 4096)
        if chunk:
            pending[fd].report += chunk
            continue
        os.close(fd)
        done = pending.pop(fd)
        try:
            answer(done, done.report.decode(errors="replace"))
        except OSError as exc:  # the hub went away meanwhile: the next request is new
            print(f"gpulab zygote: a request failed: {exc}", file=sys.stderr)
    now = time.monotonic()
    for fd in [fd for fd, waiting in pending.items() if waiting.deadline <= now]:
        os.close(fd)
        try:
            answer(pending.pop(fd), f"error: the child did not report within {CHILD_SETUP_TIMEOUT:.0f} s")
        except OSError as exc:
            print(f"gpulab zygote: a request failed: {exc}", file=sys.stderr)


def reset_signals() -> None:
    """The dispositions a new interpreter has, and nothing blocked."""
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def close_descriptors_but(keep: int) -> None:
    """Close every descriptor above stderr except `keep`."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)


def child(conn: socket.socket, status: int, home_places: list) -> None:
    """The forked child: become the spawn, then run the server. Never returns."""
    try:
        os.setsid()
        reset_signals()
        payload, fds = receive_request(conn)
        conn.detach()  # closed below, with everything else: never by the socket object later
        request = decode_request(payload)
        reason = cold_reason(list(request.argv), [], request.env)
        if reason is not None:
            raise RequestError(reason)
        if len(fds) != 2:
            raise RequestError("a request brings two descriptors: the server's output and errors")
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        close_descriptors_but(status)  # the listening socket, the wake-up pipe, the connection, ...
        script = shutil.which(request.argv[0], path=request.env.get("PATH", os.defpath)) or request.argv[0]
        argv = [script, *request.argv[1:]]
        become_step(request.account or None, request.home, [Path(c) for c in request.cgroups])()
        if request.account:
            # A changed uid makes a process undumpable (its /proc files root's); a cold server's
            # exec makes it dumpable again, so its own account may read its /proc entries: here too.
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        os.environ.clear()
        os.environ.update(request.env)
        show_as([sys.executable, *argv], request.env)
        give_home(home_places, os.path.expanduser("~"))
        import_environment.derive_again()
        fresh_process_state(argv)
        del payload, request
        try:
            warm_kernel.start_template(sys.modules[__name__])
        except Exception as exc:  # the server's kernels start the usual way
            print(f"gpulab zygote: no kernel template for this server: {exc}", file=sys.stderr)
        os.write(status, b"ok")
        os.close(status)
    except BaseException as exc:
        try:
            os.write(status, f"error: {type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(1)
    os._exit(run_server())


def as_new_interpreter(orig_argv: list[str]) -> None:
    """What a new interpreter computes from its environment as it starts, in a forked child whose
    os.environ is now its own (a server, a kernel): the locale, the time zone (time.tzname, ...),
    no logging handler, the temporary folder found again, its command line, and what the honoured
    PYTHON* variables ask."""
    try:
        locale.setlocale(locale.LC_CTYPE, "")
    except locale.Error:
        pass
    time.tzset()
    logging.getLogger().handlers.clear()
    tempfile.tempdir = None
    sys.orig_argv = list(orig_argv)
    if os.environ.get("PYTHONUNBUFFERED"):
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(write_through=True)  # type: ignore[union-attr]
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))


def fresh_process_state(argv: list[str]) -> None:
    """What a new interpreter running the server's script `argv` would have."""
    import site

    as_new_interpreter([sys.executable, *argv])
    sys.argv = list(argv)
    # The account's own site-packages (~/.local), as Python adds it when it starts as the account.
    site.USER_BASE = None
    site.USER_SITE = None
    site.ENABLE_USER_SITE = True
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site) and user_site not in sys.path:
        system = [i for i, p in enumerate(sys.path) if p.endswith("-packages")]
        sys.path.insert(system[0] if system else len(sys.path), user_site)
    gc.collect()


def run_server() -> int:
    """`jupyterhub-singleuser`'s main with sys.argv, as its console script runs it; the exit status."""
    from jupyterhub.singleuser import main

    return run_as_main(main)


def run_as_main(main: Callable[[], object]) -> int:
    """Run `main` as an interpreter runs its program (a forked server's, a forked kernel's): a
    SystemExit's code (its message, if a string, on stderr), a traceback for anything else, then
    the exit handlers; the exit status."""
    try:
        result = main()
        code = result if isinstance(result, int) else 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    run_exit_handlers()
    return code


def run_exit_handlers() -> None:
    """What an interpreter does as it exits: the atexit functions, then its streams flushed."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


def serve(path: Path, extensions: list[str]) -> None:
    failed = preimport(extensions)
    if RECORDER is not None:
        import_environment.READ_AT_IMPORT = import_environment.stop_recording(RECORDER)
    home_places = home_dependent(HOME_SENTINEL)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    gc.collect()
    gc.freeze()  # what is imported stays shared with the children instead of being copied by the collector
    print("ready", json.dumps(sorted(import_environment.READ_AT_IMPORT)), flush=True)
    if failed:
        print(f"gpulab zygote: these server extensions failed to import: {', '.join(failed)}", file=sys.stderr)
    pending: dict[int, Pending] = {}  # status pipe -> a child still setting itself up
    try:
        while True:
            wait = max(min(p.deadline for p in pending.values()) - time.monotonic(), 0) if pending else None
            readable, _, _ = select.select([listener, sys.stdin, wake_read, *pending], [], [], wait)
            if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
                return  # the hub is gone
            if wake_read in readable:
                drain(wake_read)
                reap()
            follow(pending, readable)
            if listener in readable:
                conn, _ = listener.accept()
                try:
                    if not handle(conn, home_places, pending):
                        conn.close()
                except OSError as exc:  # the hub went away mid-request: the next one is new
                    conn.close()
                    print(f"gpulab zygote: a request failed: {exc}", file=sys.stderr)
                reap()
    except KeyboardInterrupt:
        return
    finally:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass


def main() -> None:
    if len(sys.argv) < 4:  # the entry point it stands for, room for its children's arguments
        sys.exit("usage: python -m gpulab.spawner.backends.local.zygote SOCKET .../bin/jupyterhub-singleuser ROOM [EXTENSION...]")
    try:
        serve(Path(sys.argv[1]), sys.argv[4:])
    except ImportError as exc:
        print(f"cannot import the server: {exc}", flush=True)
        sys.exit(2)



if __name__ == "__main__":
    main()
