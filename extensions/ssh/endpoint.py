"""The SSH endpoint inside a user server (a part of gpulab.spawner.singleuser).

It runs in the Jupyter server process, so sessions run as the server's user, with its
environment (GPU devices, MLflow variables), locally and in a Kubernetes pod alike. It is
reached only as a WebSocket on the server's own URL (`<server>/gpulab/ssh`), which Jupyter's
auth opens only to tokens with access to this server; inside it, SSH with a host key and a
gateway password derived from the seed the spawner handed over, so only the gateway gets a
session and the gateway knows it reached the real server.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from datetime import datetime, timezone

import asyncssh
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .sessions import SessionRunner, home_folder, sftp_factory
from .trust import FAST_CIPHERS, INNER_PACKET, INNER_WINDOW, SEED_VARIABLE, endpoint_host_key, endpoint_password
from .tunnel import socket_pair

ROUTE = "gpulab/ssh"
ACTIVITY_KEY = "gpulab-ssh"


class EndpointServer(asyncssh.SSHServer):
    """Accepts only the gateway (the derived password); forwards TCP from inside the server."""

    def __init__(self, password: str, log):
        self.password = password
        self.log = log

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), self.password.encode())

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        return True  # -L forwarding: connect from inside the server, as its user

    def server_requested(self, listen_host, listen_port):
        return False  # no -R


class Endpoint:
    def __init__(self, seed: str, environ: dict, log):
        self.host_key = endpoint_host_key(seed)
        self.password = endpoint_password(seed)
        self.environ = environ
        self.log = log

    async def serve(self, sock) -> asyncssh.SSHServerConnection:
        return await asyncssh.run_server(
            sock, config=None,
            server_factory=lambda: EndpointServer(self.password, self.log),
            server_host_keys=[self.host_key], encryption_algs=FAST_CIPHERS[:1],
            window=INNER_WINDOW, max_pktsize=INNER_PACKET,
            process_factory=SessionRunner(self.environ, self.log),
            sftp_factory=sftp_factory(home_folder(self.environ)),
            allow_scp=False,  # `scp -O` runs the real scp through exec
            encoding=None, line_editor=False,
            public_key_auth=False, kbdint_auth=False, password_auth=True,
            agent_forwarding=False, x11_forwarding=False,
            keepalive_interval=30, login_timeout=30,
        )


class EndpointSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """One gateway connection: the WebSocket carries one SSH connection."""

    auth_resource = "terminals"

    def initialize(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.end = None
        self.connection: asyncssh.SSHServerConnection | None = None
        self.tasks: list[asyncio.Task] = []

    def set_default_headers(self):
        pass  # JupyterHandler's headers are for pages, not WebSockets

    def get_compression_options(self):
        return None

    @ws_authenticated
    async def get(self, *args, **kwargs):
        # A shell is terminal access: require the same right as Jupyter's terminals.
        if not await ensure_async(self.authorizer.is_authorized(self, self.current_user, "execute", "terminals")):
            raise web.HTTPError(403)
        await super().get(*args, **kwargs)

    async def open(self, *args, **kwargs):
        super().open()
        sock, self.end = await socket_pair()
        self.touch()
        self.tasks.append(asyncio.ensure_future(self._serve(sock)))
        self.tasks.append(asyncio.ensure_future(self.end.relay(self._send)))

    async def _serve(self, sock) -> None:
        try:
            self.connection = connection = await self.endpoint.serve(sock)
            self.log.info("gpulab ssh: session for %s opened", self.current_user.username)
            await connection.wait_closed()
        except (asyncssh.Error, OSError) as exc:
            self.log.warning("gpulab ssh: connection ended: %s", exc)
        finally:
            self.close()

    async def _send(self, data: bytes) -> None:
        self.touch()
        try:
            await self.write_message(data, binary=True)
        except WebSocketClosedError:
            pass

    async def on_message(self, message):
        if isinstance(message, str):
            message = message.encode()
        self.touch()
        await self.end.feed(message)

    def on_close(self):
        if self.end is not None:
            self.end.close()
        if self.connection is not None:
            self.connection.close()

    def touch(self) -> None:
        # SSH traffic is activity: the culler must not stop a server someone is working in.
        self.settings.setdefault("last_activity_times", {})[ACTIVITY_KEY] = datetime.now(timezone.utc)


def load(serverapp) -> None:
    seed = os.environ.pop(SEED_VARIABLE, "")  # kept from the user's kernels and terminals
    if not seed:
        serverapp.log.info("gpulab ssh: %s is not set; the SSH endpoint is off", SEED_VARIABLE)
        return
    endpoint = Endpoint(seed, dict(os.environ), serverapp.log)
    route = url_path_join(serverapp.base_url, ROUTE)
    serverapp.web_app.add_handlers(".*$", [(route, EndpointSocket, {"endpoint": endpoint})])
    serverapp.log.info("gpulab ssh: endpoint at %s", route)
