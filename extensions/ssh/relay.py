"""Channel relays: each channel a client opens on the gateway becomes the same channel on the
connection to the server's endpoint, with everything that belongs to it passed on as it
comes: terminal requests and resizes, environment, exec/shell/subsystem, signals, EOF, exit
status or signal, and flow control in both directions."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import asyncssh
from asyncssh import EXTENDED_DATA_STDERR

from .sessions import CLIENT_VARIABLES
from .trust import INNER_PACKET, INNER_WINDOW
from .upstream import Refused

REFUSED_STATUS = 255  # what OpenSSH's client itself exits with when it cannot connect


class SessionRelay(asyncssh.SSHServerSession):
    """A session channel (shell, exec, subsystem such as sftp) relayed to the endpoint."""

    down: asyncssh.SSHServerChannel  # the client's channel: connection_made, asyncssh's first call, sets it

    def __init__(self, connect: Callable[[Callable[[str], None]], Awaitable[asyncssh.SSHClientConnection]],
                 on_open: Callable[[dict], None], on_close: Callable[[dict], None]):
        self.connect = connect
        self.on_open = on_open
        self.on_close = on_close
        self.up: asyncssh.SSHClientChannel | None = None  # the endpoint's channel, once open
        self.terminal: tuple | None = None
        self.request: dict = {"kind": "shell"}
        self.started = time.monotonic()
        self.closed = False
        self.early_input: list[bytes] = []  # what the client sent before the endpoint's channel opened
        self.early_eof = False

    # ------------------------------------------------------------ requests from the client

    def connection_made(self, chan):
        self.down = chan

    def pty_requested(self, term_type, term_size, term_modes):
        self.terminal = (term_type, term_size, term_modes)
        return True

    def shell_requested(self):
        self.request = {"kind": "shell"}
        return True

    def exec_requested(self, command):
        self.request = {"kind": "exec", "command": command}
        return True

    def subsystem_requested(self, subsystem):
        self.request = {"kind": subsystem if subsystem == "sftp" else "subsystem", "subsystem": subsystem}
        return True

    def session_started(self):
        self.down.pause_reading()  # until the endpoint's channel is open
        asyncio.ensure_future(self._open())

    async def _open(self) -> None:
        try:
            connection = await self.connect(self._notice)
            environment: dict[str | bytes, str | bytes] = {
                k: v for k, v in self.down.get_environment().items() if CLIENT_VARIABLES.match(k)}
            term_type, term_size, term_modes = self.terminal or (None, (0, 0, 0, 0), {})
            up, _ = await connection.create_session(
                lambda: _EndpointSession(self), command=self.request.get("command"),
                subsystem=self.request.get("subsystem"), env=environment,
                request_pty=bool(self.terminal), term_type=term_type, term_size=term_size,
                term_modes=term_modes, encoding=None, window=INNER_WINDOW, max_pktsize=INNER_PACKET,
            )
        except Refused as exc:
            self._refuse(str(exc))
            return
        except (asyncssh.Error, OSError) as exc:
            self._refuse(f"the server closed the connection: {exc}")
            return
        self.up = up
        self.on_open({**self._summary(), "pty": "yes" if self.terminal else "no"})
        for data in self.early_input:
            up.write(data)
        if self.early_eof:
            up.write_eof()
        self.early_input.clear()
        self.down.resume_reading()

    def _notice(self, text: str) -> None:
        if not self.closed:
            self.down.write(f"gpulab: {text}\r\n".encode(), EXTENDED_DATA_STDERR)

    def _refuse(self, message: str) -> None:
        self._notice(message)
        if not self.closed:
            self.down.exit(REFUSED_STATUS)

    def _summary(self) -> dict:
        summary = {"kind": self.request["kind"]}
        if self.request["kind"] == "subsystem":
            summary["subsystem"] = self.request["subsystem"]
        return summary

    # ------------------------------------------------------------ client -> endpoint

    def data_received(self, data, datatype):
        if self.up is None:
            self.early_input.append(data)
        else:
            self.up.write(data)

    def eof_received(self):
        if self.up is None:
            self.early_eof = True
        else:
            self.up.write_eof()
        return True  # keep sending output after the client's input ended

    def terminal_size_changed(self, width, height, pixwidth, pixheight):
        if self.up is not None:
            self.up.change_terminal_size(width, height, pixwidth, pixheight)

    def signal_received(self, signal):
        if self.up is not None:
            self.up.send_signal(signal)

    def break_received(self, msec):
        if self.up is not None:
            self.up.send_break(msec)
        return True

    def pause_writing(self):
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self):
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc):
        self.closed = True
        if self.up is not None:
            self.up.close()

    # ------------------------------------------------------------ endpoint -> client

    def finished(self, status: int | None, signal: tuple | None) -> None:
        if status is None and signal is None and self.request["kind"] == "sftp":
            # asyncssh's SFTP server ends without an exit status; OpenSSH's reports 0, and
            # scp counts anything else as a failure.
            status = 0
        if self.up is not None:
            self.on_close({**self._summary(), "status": status if signal is None else f"signal:{signal[0]}",
                           "seconds": round(time.monotonic() - self.started, 3)})
        if self.closed:
            return
        if signal is not None:
            self.down.exit_with_signal(*signal)
        elif status is not None:
            self.down.exit(status)
        else:
            self.down.close()


class _EndpointSession(asyncssh.SSHClientSession):
    def __init__(self, relay: SessionRelay):
        self.relay = relay
        self.status = None
        self.signal = None

    def data_received(self, data, datatype):
        if not self.relay.closed:
            self.relay.down.write(data, datatype)

    def eof_received(self):
        if not self.relay.closed:
            self.relay.down.write_eof()
        return True

    def exit_status_received(self, status):
        self.status = status

    def exit_signal_received(self, signal, core_dumped, msg, lang):
        self.signal = (signal, core_dumped, msg, lang)

    def pause_writing(self):
        self.relay.down.pause_reading()

    def resume_writing(self):
        self.relay.down.resume_reading()

    def connection_lost(self, exc):
        self.relay.finished(self.status, self.signal)


class TCPRelay(asyncssh.SSHTCPSession):
    """One direct-tcpip channel (ssh -L), paired with the same on the endpoint's connection."""

    def __init__(self, on_close: Callable[[], None]):
        self.down = None
        self.up = None
        self.other: TCPRelay | None = None
        self.on_close = on_close
        self.closed = False

    @classmethod
    async def open(cls, connection: asyncssh.SSHClientConnection, host: str, port: int,
                   on_close: Callable[[], None]) -> "TCPRelay":
        client_side = cls(on_close)
        endpoint_side = cls(lambda: None)
        chan, _ = await connection.create_connection(lambda: endpoint_side, host, port, encoding=None,
                                                     window=INNER_WINDOW, max_pktsize=INNER_PACKET)
        chan.pause_reading()  # until the client's channel exists
        client_side.other, endpoint_side.other = endpoint_side, client_side
        return client_side

    def connection_made(self, chan):
        self.down = chan
        if self.other is not None and self.other.down is not None:
            self.other.down.resume_reading()

    def data_received(self, data, datatype):
        self.other.down.write(data)

    def eof_received(self):
        self.other.down.write_eof()
        return True

    def pause_writing(self):
        self.other.down.pause_reading()

    def resume_writing(self):
        self.other.down.resume_reading()

    def connection_lost(self, exc):
        self.closed = True
        if not self.other.closed and self.other.down is not None:
            self.other.down.close()
        self.on_close()
