"""The root part of the projects service: project folders, behind a Unix socket.

When the hub runs as root, the projects service (its API, pages, store and hub sync) runs as
its own account, which cannot make system groups, set ACLs, give folders to root or link
into homes. This helper does those four things and nothing else: a small process the hub
starts as root (a managed service without HTTP, `python -m gpulab.extensions.projects.storage.helper`,
started again if it dies), listening on `<data_dir>/projects-storage/storage.sock`.

Who can reach it: the socket's folder is root's, mode 0710, group the service account's own
group; the socket is 0660 in that group; and each connection's peer (SO_PEERCRED) must be
the service's account or root. What it does: exactly the storage operations the service
calls (`check_available`, `apply_project`, `remove_project`, see sync.Storage), each argument
checked here before the file system is touched: the project name against membership.SLUG,
hub user names (text of at most 255 printable characters that maps to a system account),
roles from membership.ROLES, no other keys. Anything else is refused, with the reason.

The protocol: one request per connection, one line of JSON each way.
  {"op": "apply_project", "slug": "vision", "members": {"alice": "maintainer"}}
  -> {"ok": true} | {"conflict": "..."} | {"refused": "..."} | {"failed": "..."}

`HelperStorage` is the service's side: the same methods as LocalStorage, sent here. When the
hub is not root, the service runs as the hub's user and uses LocalStorage in-process instead.
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

from gpulab.extensions.service.errors import Conflict
from gpulab.spawner.accounts import AccountError, account_name

from ..membership import ROLES, SLUG

log = logging.getLogger("gpulab.projects.storage")

FOLDER = "projects-storage"
SOCKET = "storage.sock"
MAX_REQUEST = 1 << 20  # bytes: one line of JSON
MAX_MEMBERS = 100_000
MAX_USER_NAME = 255  # what the projects tables hold
# The arguments each operation takes, besides "op".
OPERATIONS = {
    "check_available": ("slug",),
    "apply_project": ("slug", "members"),
    "remove_project": ("slug", "users"),
}


class Refused(Exception):
    """A request the helper does not carry out; the message says why."""


class StorageHelperError(Exception):
    """The helper could not be reached, or failed to carry out a request."""


def socket_path(data_dir: str) -> Path:
    return Path(data_dir, FOLDER, SOCKET)


# ------------------------------------------------------------ checks (pure)


def check_slug(value) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise Refused(f"not a project name: {value!r}")
    return value


def check_user(value, account_prefix: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_USER_NAME or not value.isprintable():
        raise Refused(f"not a hub user name: {value!r}")
    try:
        account_name(value, account_prefix)
    except AccountError as error:
        raise Refused(str(error)) from None
    return value


def check_request(request, account_prefix: str) -> tuple[str, tuple]:
    """(operation, arguments) of a well-formed request; raises Refused otherwise."""
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise Refused("a request is a JSON object with an \"op\"")
    op = request["op"]
    if op not in OPERATIONS:
        raise Refused(f"unknown operation {op!r}; the helper offers {', '.join(OPERATIONS)}")
    expected = {"op", *OPERATIONS[op]}
    if set(request) != expected:
        raise Refused(f"{op} takes exactly {', '.join(OPERATIONS[op])}; got {', '.join(sorted(set(request) - {'op'}))}")
    slug = check_slug(request["slug"])
    if op == "check_available":
        return op, (slug,)
    if op == "apply_project":
        members = request["members"]
        if not isinstance(members, dict) or len(members) > MAX_MEMBERS:
            raise Refused("members is an object of hub user name -> role")
        for user, role in members.items():
            check_user(user, account_prefix)
            if role not in ROLES:
                raise Refused(f"unknown role {role!r} for {user!r}; expected one of {', '.join(ROLES)}")
        return op, (slug, dict(members))
    users = request["users"]
    if not isinstance(users, list) or len(users) > MAX_MEMBERS:
        raise Refused("users is a list of hub user names")
    return op, (slug, [check_user(user, account_prefix) for user in users])


def answer(storage, request, account_prefix: str) -> dict:
    """Carry out one request on `storage` (LocalStorage), or say why not."""
    try:
        op, arguments = check_request(request, account_prefix)
    except Refused as refused:
        log.warning("refused a request: %s", refused)
        return {"refused": str(refused)}
    try:
        getattr(storage, op)(*arguments)
    except Conflict as conflict:
        return {"conflict": conflict.message}
    except Exception as error:
        log.exception("%s %s failed", op, arguments[0])
        return {"failed": f"{op} {arguments[0]}: {error}"}
    return {"ok": True}


# ------------------------------------------------------------ the helper (root)


def peer_uid(connection: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 struct.calcsize("3i")))
    return uid


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        uid = peer_uid(self.connection)
        if uid not in (0, server.client_uid):
            log.warning("refused a connection from uid %s", uid)
            reply = {"refused": f"uid {uid} may not use the projects storage helper"}
        else:
            line = self.rfile.readline(MAX_REQUEST + 1)
            if len(line) > MAX_REQUEST or not line.endswith(b"\n"):
                reply = {"refused": f"a request is one line of JSON of at most {MAX_REQUEST} bytes"}
            else:
                try:
                    request = json.loads(line)
                except ValueError:
                    reply = {"refused": "a request is one line of JSON"}
                else:
                    reply = answer(server.storage, request, server.account_prefix)
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


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
    sock.listen(16)
    return sock


def serve(settings: dict) -> None:
    from .local import storage_from_settings

    if os.geteuid() != 0:
        raise SystemExit("the projects storage helper runs as root only (the hub starts it when it is root)")
    client = pwd.getpwnam(settings["client"])
    path = Path(settings["socket"])
    server = _Server(str(path), _Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listen(path, client)
    server.storage = storage_from_settings(settings["storage"])
    server.client_uid = client.pw_uid
    server.account_prefix = settings["storage"]["account_prefix"]
    signal.signal(signal.SIGTERM, _stop)
    log.info("serving %s for %s (uid %s)", path, client.pw_name, client.pw_uid)
    try:
        server.serve_forever()
    finally:
        path.unlink(missing_ok=True)


def _stop(signum, frame) -> None:
    raise SystemExit(0)  # out of serve_forever, through its `finally`


# ------------------------------------------------------------ the service's side


class HelperStorage:
    """sync.Storage through the helper (the service, as its own account)."""

    def __init__(self, path: Path | str, wait: float = 30.0, timeout: float = 600.0):
        self.path = str(path)
        self.wait = wait  # seconds to wait for the helper (it may be starting, or restarting)
        self.timeout = timeout  # seconds one operation may take (a big folder's ACLs)

    def check_available(self, slug: str) -> None:
        self.call({"op": "check_available", "slug": slug})

    def apply_project(self, slug: str, members: dict[str, str]) -> None:
        self.call({"op": "apply_project", "slug": slug, "members": members})

    def remove_project(self, slug: str, members: list[str]) -> None:
        self.call({"op": "remove_project", "slug": slug, "users": list(members)})

    def call(self, request: dict) -> dict:
        reply = self.send(request)
        if "conflict" in reply:
            raise Conflict(reply["conflict"])
        if not reply.get("ok"):
            raise StorageHelperError(reply.get("refused") or reply.get("failed") or f"unexpected answer {reply!r}")
        return reply

    def send(self, request: dict) -> dict:
        with self._connect() as sock:
            sock.settimeout(self.timeout)
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as replies:
                line = replies.readline(MAX_REQUEST)
        if not line:
            raise StorageHelperError(f"the projects storage helper at {self.path} closed the connection")
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
                    raise StorageHelperError(f"the projects storage helper at {self.path} does not answer: {error}")
                time.sleep(0.2)
            except OSError:
                sock.close()
                raise


def main() -> None:
    from gpulab.extensions.service.lifetime import end_with_hub
    from gpulab.extensions.service.runner import configure_logging, service_settings

    end_with_hub()
    settings = service_settings()
    configure_logging("projects-storage", settings.get("log_level", "INFO"))
    serve(settings)


if __name__ == "__main__":
    main()
