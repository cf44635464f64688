"""The root part of a service that runs as its own account: a small process behind a Unix socket.

A service that runs as its own account (service_account.py) sometimes needs a few things only
root can do (groups and ACLs for projects, starting runs as their owners for the scheduler).
Its root helper is a managed service without HTTP that a root hub starts (and starts again if
it dies); this module is what every such helper shares:

- who can reach it: the socket's folder is root's, mode 0710, group the client account's own
  group; the socket is 0660 in that group; each connection's peer (SO_PEERCRED) must be the
  client's account or root;
- the protocol: one request per connection, one line of JSON each way (file descriptors may
  ride along with the request, SCM_RIGHTS, e.g. a log file the client opened itself);
- the client's side (`HelperClient`), which waits for a helper that is (re)starting.

What a helper does with a request is its own: `answer(request, fds) -> dict` checks every
argument before touching anything and says why it refuses.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import socket
import socketserver
import stat
import struct
import time
from pathlib import Path
from typing import Callable, Sequence, cast

from gpulab.spawner.accounts import AccountError, account_name

log = logging.getLogger("gpulab.root_helper")

MAX_REQUEST = 1 << 20  # bytes: one line of JSON
MAX_FDS = 4


MAX_USER_NAME = 255  # what gpulab's tables hold


class HelperError(Exception):
    """The helper could not be reached, or did not carry out a request."""


class Refused(Exception):
    """A request the helper does not carry out; the message says why."""


def check_user(value, account_prefix: str) -> str:
    """A hub user name: text of at most 255 printable characters that maps to a system account."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_USER_NAME or not value.isprintable():
        raise Refused(f"not a hub user name: {value!r}")
    try:
        account_name(value, account_prefix)
    except AccountError as error:
        raise Refused(str(error)) from None
    return value


def peer_uid(connection: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 struct.calcsize("3i")))
    return uid


def listen(path: Path, client: pwd.struct_passwd) -> socket.socket:
    """The socket at `path`, in a folder of root's that only `client`'s group may pass."""
    folder = path.parent
    folder.mkdir(mode=0o710, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise SystemExit(f"{folder} must be a folder, not a link or a file")
    os.chown(folder, 0, client.pw_gid, follow_symlinks=False)
    os.chmod(folder, 0o710)
    if path.exists() or path.is_symlink():
        path.unlink()  # left by a helper that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # no moment in which the socket is open to others
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous)
    os.chown(path, 0, client.pw_gid, follow_symlinks=False)
    os.chmod(path, 0o660)  # (the folder is root's: nobody can put a link here)
    sock.listen(64)
    return sock


def _receive_line(connection: socket.socket) -> tuple[bytes, list[int]]:
    """One request line and the descriptors sent with its first bytes."""
    data, fds = b"", []
    while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
        chunk, received, _flags, _addr = socket.recv_fds(connection, 65536, MAX_FDS)
        fds.extend(received)
        if not chunk:
            break
        data += chunk
    return data, fds


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = cast(Server, self.server)
        uid = peer_uid(self.request)
        fds: list[int] = []
        try:
            if uid not in (0, server.client_uid):
                log.warning("refused a connection from uid %s", uid)
                reply = {"refused": f"uid {uid} may not use the {server.helper_name}"}
            else:
                line, fds = _receive_line(self.request)
                if len(line) > MAX_REQUEST or not line.endswith(b"\n"):
                    reply = {"refused": f"a request is one line of JSON of at most {MAX_REQUEST} bytes"}
                else:
                    try:
                        request = json.loads(line)
                    except ValueError:
                        reply = {"refused": "a request is one line of JSON"}
                    else:
                        reply = server.answer(request, fds)
            self.request.sendall(json.dumps(reply).encode() + b"\n")
        finally:
            for fd in fds:
                os.close(fd)


class Server(socketserver.ThreadingUnixStreamServer):
    """`answer` for each connection of root or `client_uid`, one thread each. Bound here to a
    plain socket (tests); `serve` gives it the guarded one."""

    daemon_threads = True

    def __init__(self, path: Path | str, answer: Callable[[dict, list[int]], dict], client_uid: int,
                 helper_name: str, bind: bool = True):
        super().__init__(str(path), _Handler, bind_and_activate=bind)
        self.answer, self.client_uid, self.helper_name = answer, client_uid, helper_name


def serve(path: Path, client_account: str, helper_name: str, answer: Callable[[dict, list[int]], dict]) -> None:
    """Answer requests at `path` for `client_account` (and root) until SIGTERM or SIGINT."""
    if os.geteuid() != 0:
        raise SystemExit(f"the {helper_name} runs as root only (the hub starts it when it is root)")
    client = pwd.getpwnam(client_account)
    server = Server(path, answer, client.pw_uid, helper_name, bind=False)
    server.socket.close()
    server.socket = listen(path, client)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # JupyterHub stops a managed service with SIGINT first
    log.info("serving %s for %s (uid %s)", path, client.pw_name, client.pw_uid)
    try:
        server.serve_forever()
    finally:
        path.unlink(missing_ok=True)


def _stop(signum, frame) -> None:
    raise SystemExit(0)  # out of serve_forever, through its `finally`


class HelperClient:
    """The service's side: send one request (and descriptors), read one reply."""

    def __init__(self, path: Path | str, helper_name: str, wait: float = 30.0, timeout: float | None = 600.0):
        self.path = str(path)
        self.helper_name = helper_name
        self.wait = wait  # seconds to wait for the helper (it may be starting, or restarting)
        self.timeout = timeout  # seconds one operation may take (None: as long as it takes)

    def send(self, request: dict, fds: Sequence[int] = ()) -> dict:
        with self._connect() as sock:
            sock.settimeout(self.timeout)
            data = json.dumps(request).encode() + b"\n"
            if fds:
                sent = socket.send_fds(sock, [data], list(fds))
                data = data[sent:]
            try:
                if data:  # (a send of nothing to a helper that already answered is EPIPE too)
                    sock.sendall(data)
            except BrokenPipeError:
                pass  # the helper answered before reading it all (a refusal): its reply is waiting
            with sock.makefile("rb") as replies:
                line = replies.readline()
        if not line:
            raise HelperError(f"the {self.helper_name} at {self.path} closed the connection")
        return json.loads(line)

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.wait
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError) as error:
                sock.close()
                if time.monotonic() > deadline:
                    raise HelperError(f"the {self.helper_name} at {self.path} does not answer: {error}")
                time.sleep(0.2)
            except OSError:
                sock.close()
                raise
