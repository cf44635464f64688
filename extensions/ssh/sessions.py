"""What an SSH session does inside the user's server: run a shell or a command (with or
without a terminal) as the server's own user, with the server's environment, in the home
folder; serve SFTP from the home folder.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import signal
import struct
import termios
from collections.abc import Mapping
from pathlib import Path

import asyncssh

from .pipes import copy_output, feed_stdin

# Variables a client may send (OpenSSH sends LANG and LC_* by default).
CLIENT_VARIABLES = re.compile(r"^(LANG|LANGUAGE|LC_[A-Z_]+|COLORTERM|TERM_PROGRAM(_VERSION)?)$")
HANG_UP_GRACE = 2.0  # seconds a session's processes get after SIGHUP before SIGKILL
OUTPUT_GRACE = 1.0  # seconds to collect output after the command exited (a background job may hold the terminal)


def home_folder(environ: dict) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def login_shell(environ: dict) -> str:
    shell = environ.get("SHELL", "")
    return shell if shell and os.access(shell, os.X_OK) else "/bin/bash"


def session_environment(server_environ: Mapping[str, str], client_env: Mapping[str, str], term_type: str | None) -> dict:
    """The server's environment (GPU devices, MLflow, ...) plus what the client may set."""
    environ = dict(server_environ)
    for name, value in client_env.items():
        name = name.decode() if isinstance(name, bytes) else name
        value = value.decode(errors="replace") if isinstance(value, bytes) else value
        if CLIENT_VARIABLES.match(name):
            environ[name] = value
    if term_type:
        environ["TERM"] = term_type
    else:
        environ.pop("TERM", None)
    return environ


def command_line(shell: str, command: str | None) -> list[str]:
    """A shell for an interactive session, `shell -c command` for exec (as sshd does)."""
    return [shell, "-l"] if command is None else [shell, "-c", command]


def _set_size(fd: int, size: tuple) -> None:
    width, height = size[0] or 80, size[1] or 24
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, size[2], size[3]))


def _take_terminal() -> None:
    # In the child, after setsid: make the terminal on fd 0 its controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class SessionRunner:
    """Runs each SSH session of the endpoint. `environ` is the server's environment."""

    def __init__(self, environ: dict, log):
        self.environ = environ
        self.log = log

    async def __call__(self, process: asyncssh.SSHServerProcess) -> None:
        if process.subsystem is not None:
            process.stderr.write(f"subsystem {process.subsystem!r} is not available\n".encode())
            process.exit(1)
            return
        environ = session_environment(self.environ, process.env, process.term_type)
        argv = command_line(login_shell(environ), process.command)
        cwd = home_folder(environ)
        try:
            if process.term_type:
                status = await self._run_in_terminal(process, argv, environ, cwd)
            else:
                status = await self._run_with_pipes(process, argv, environ, cwd)
        except OSError as exc:
            process.stderr.write(f"gpulab: cannot run {argv[0]}: {exc.strerror}\n".encode())
            process.exit(127)
            return
        if status is None:  # the client went away; the processes were hung up
            return
        if status < 0:
            process.exit_with_signal(signal.Signals(-status).name[3:])
        else:
            process.exit(status)

    async def _run_with_pipes(self, process, argv, environ, cwd) -> int | None:
        # Our own copies, not process.redirect(): see pipes.py for why.
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, stdin=stdin_read, stdout=stdout_write, stderr=stderr_write,
                env=environ, cwd=cwd, start_new_session=True,
            )
        except BaseException:
            for fd in (stdin_write, stdout_read, stderr_read):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_read, stdout_write, stderr_write):
                os.close(fd)
        stdin = asyncio.ensure_future(feed_stdin(process.stdin, stdin_write, lambda name: _signal(child, name)))
        # Like sshd: the session ends when the command exited and its output pipes ended
        # (a background job that keeps stdout open keeps the session open).
        outputs = asyncio.gather(copy_output(stdout_read, process.stdout), copy_output(stderr_read, process.stderr))
        closed = asyncio.ensure_future(process.wait_closed())
        done = asyncio.ensure_future(_both(child.wait(), outputs))
        try:
            await asyncio.wait({closed, done}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                await self._hang_up(child)
                return None
            return child.returncode
        finally:
            for task in (stdin, closed, done, outputs):
                task.cancel()
            await asyncio.gather(stdin, outputs, return_exceptions=True)

    async def _run_in_terminal(self, process, argv, environ, cwd) -> int | None:
        controller, terminal = pty.openpty()
        try:
            _set_size(terminal, process.term_size)
            child = await asyncio.create_subprocess_exec(
                *argv, stdin=terminal, stdout=terminal, stderr=terminal, env=environ, cwd=cwd,
                start_new_session=True, preexec_fn=_take_terminal,
            )
        except BaseException:
            os.close(controller)
            raise
        finally:
            os.close(terminal)
        process.set_redirect_pid(child.pid)
        # asyncssh writes to the terminal, resizes it on window changes, and reads its output.
        writer = os.fdopen(os.dup(controller), "wb", buffering=0)
        reader = os.fdopen(controller, "rb", buffering=0)
        await process.redirect(stdin=writer, stdout=reader)
        return await self._finish(process, child, [process.stdout])

    async def _finish(self, process, child, outputs) -> int | None:
        closed = asyncio.ensure_future(process.wait_closed())
        exited = asyncio.ensure_future(child.wait())
        await asyncio.wait({closed, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            closed.cancel()
            await self._hang_up(child)
            return None
        try:
            await asyncio.wait_for(asyncio.gather(*(out.drain() for out in outputs)), OUTPUT_GRACE)
        except (asyncio.TimeoutError, asyncssh.Error, BrokenPipeError, ConnectionError):
            pass
        closed.cancel()
        return exited.result()

    async def _hang_up(self, child) -> None:
        for sig in (signal.SIGHUP, signal.SIGKILL):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                return
            try:
                await asyncio.wait_for(child.wait(), HANG_UP_GRACE)
                return
            except asyncio.TimeoutError:
                continue


def _signal(child, name: str) -> None:
    """A signal the client sent (`ssh` sends them by name, e.g. "INT"), to the command."""
    number = getattr(signal, f"SIG{name}", None)
    if isinstance(number, signal.Signals) and child.returncode is None:
        try:
            os.kill(child.pid, number)
        except ProcessLookupError:
            pass


async def _both(exited, outputs) -> None:
    await exited
    await outputs


class HomeSFTPServer(asyncssh.SFTPServer):
    """SFTP where relative paths start in the home folder (as with OpenSSH's sftp-server)."""

    home = b"/"

    def map_path(self, path: bytes) -> bytes:
        if not path.startswith(b"/"):
            path = self.home.rstrip(b"/") + b"/" + path
        return super().map_path(path)


def sftp_factory(home: str):
    return type("SFTPServerAtHome", (HomeSFTPServer,), {"home": os.fsencode(str(Path(home)))})
