"""SSH over a WebSocket: asyncssh speaks to one end of a socket pair, the WebSocket carries
the bytes of the other end. Used on both sides (gateway and endpoint); messages are binary
and each side waits for the other to take data before reading more (back-pressure)."""

from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable

CHUNK = 256 * 1024


class SocketEnd:
    """The end of a socket pair that the WebSocket side reads and writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    async def feed(self, data: bytes) -> None:
        """Bytes that arrived on the WebSocket, for asyncssh (dropped once asyncssh closed its end)."""
        if self.writer.is_closing():
            return
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            pass  # asyncssh closed the connection: the session is over

    async def relay(self, send: Callable[[bytes], Awaitable[object]]) -> None:
        """Bytes asyncssh wrote, sent on with `send` until asyncssh closes its end."""
        try:
            while True:
                data = await self.reader.read(CHUNK)
                if not data:
                    return
                await send(data)
        except ConnectionError:
            return  # the other side ended: the session is over

    def close(self) -> None:
        self.writer.close()


async def socket_pair() -> tuple[socket.socket, SocketEnd]:
    """(the socket for asyncssh, the end for the WebSocket)."""
    ssh_side, ws_side = socket.socketpair()
    for sock in (ssh_side, ws_side):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHUNK)
        sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=ws_side, limit=CHUNK)
    return ssh_side, SocketEnd(reader, writer)
