"""Byte-exact copies between an SSH channel and a command's stdin, stdout and stderr pipes.

Why not asyncssh's `process.redirect()` to pipes: it writes stdin through asyncio's pipe
transport, which closes the pipe with data still in its buffer when the channel's EOF arrives
while the transport is resuming the channel's reading (the tail of stdin is lost when the
command reads late: issue 14). Here each direction is one task that reads a chunk, writes
all of it, and only then reads the next, so back-pressure is the SSH window itself and EOF
(closing the pipe) comes after the last byte.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable

import asyncssh

CHUNK = 64 * 1024


async def _ready(fd: int, for_writing: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if for_writing else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if for_writing else loop.remove_reader)(fd)


async def write_all(fd: int, data: bytes) -> bool:
    """Write every byte to a non-blocking pipe; False when its reader has closed it."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await _ready(fd, for_writing=True)
        except (BrokenPipeError, ConnectionResetError):
            return False
    return True


async def read_some(fd: int) -> bytes:
    """The next chunk from a non-blocking pipe; b"" at its end."""
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            await _ready(fd, for_writing=False)


async def feed_stdin(reader: asyncssh.SSHReader, fd: int, on_signal: Callable[[str], None]) -> None:
    """What the client sends, written to the command's stdin in order, closed after the last
    byte (the command's EOF). Input the command no longer takes (it closed its stdin) is read
    and dropped, as sshd does, so the client is never stuck on a full window. Signals and
    breaks the client sends arrive in the same stream, in order, and go to `on_signal`."""
    os.set_blocking(fd, False)
    open_ = True
    try:
        while True:
            try:
                data = await reader.read(CHUNK)
            except asyncssh.SignalReceived as exc:
                on_signal(exc.signal)
                continue
            except asyncssh.BreakReceived:
                on_signal("INT")  # what sshd does with a break
                continue
            except asyncssh.TerminalSizeChanged:
                continue  # no terminal on pipes
            except (asyncssh.Error, ConnectionError):
                return  # the channel is gone: close stdin
            if not data:
                return
            if open_:
                open_ = await write_all(fd, data)
    finally:
        os.close(fd)


async def copy_output(fd: int, writer: asyncssh.SSHWriter) -> None:
    """The command's output, sent on until its end (every process that holds the pipe closed
    it), each chunk only once the client's window took the previous one."""
    os.set_blocking(fd, False)
    try:
        while data := await read_some(fd):
            writer.write(data)
            await writer.drain()
    except (asyncssh.Error, BrokenPipeError, ConnectionError):
        pass  # the client went away; closing the pipe tells the command
    finally:
        os.close(fd)
