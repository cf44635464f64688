"""From a signed-in SSH connection to the SSH endpoint inside the target server.

1. The hub decides access: the gateway asks it for a short-lived token of the connecting
   user, scoped to the target server only; the hub refuses when that user may not access it.
2. The server must exist; the owner's stopped server is started (progress goes to `notify`).
3. The token opens the WebSocket `<server URL>gpulab/ssh` through the proxy; it is deleted
   right after.
4. SSH to the endpoint inside it, pinned to the host key derived for this very server, with
   the password derived for it.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Callable

import asyncssh
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClosedError, websocket_connect

from .hubapi import HubAPI, HubError
from .targets import Target
from .trust import FAST_CIPHERS, endpoint_host_key, endpoint_password, endpoint_seed
from .tunnel import CHUNK, socket_pair

ENDPOINT_ROUTE = "gpulab/ssh"
PENDING_POLL = 0.1  # seconds between looks at a server the hub is asked to start


class Refused(Exception):
    """The connection cannot reach the server; the message says why, for the user."""


@dataclass
class UpstreamSettings:
    servers_url: str  # the proxy, e.g. http://127.0.0.1:8000
    start_stopped_servers: bool
    start_timeout: float
    master_secret: bytes


def websocket_url(servers_url: str, server_url_path: str) -> str:
    base = servers_url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base + server_url_path.rstrip("/") + "/" + ENDPOINT_ROUTE


class Upstream:
    """Opens the SSH connection to a target server for a connecting user."""

    def __init__(self, hub: HubAPI, settings: UpstreamSettings, audit, log):
        self.hub = hub
        self.settings = settings
        self.audit = audit
        self.log = log

    async def open(self, identity: str, target: Target, notify: Callable[[str], None]) -> asyncssh.SSHClientConnection:
        try:
            return await self._open(identity, target, notify)
        except HubError as exc:
            # Any hub answer the steps below did not expect (a user deleted meanwhile, an
            # admin naming a user who does not exist, the hub down): a reason, not a hang.
            if exc.status in (400, 403, 404):
                raise Refused(f"there is no server {target.login!r} that you ({identity}) may use") from None
            self.log.warning("SSH to %s for %s: the hub answered %s", target.label, identity, exc)
            raise Refused(f"the hub cannot open {target.describe()} now ({exc.status}); try again later") from None

    async def _open(self, identity: str, target: Target, notify: Callable[[str], None]) -> asyncssh.SSHClientConnection:
        token, token_id = await self.hub.mint_access_token(identity, target)
        try:
            model = await self._running_server(identity, target, notify)
            websocket = await self._open_websocket(model["url"], token, target)
        finally:
            await self.hub.revoke_token(identity, token_id)
        return await self._ssh(websocket, identity, target)

    async def _running_server(self, identity: str, target: Target, notify) -> dict:
        model = await self.hub.server_model(target)
        if model is None and target.server:
            raise Refused(f"{target.owner} has no server named {target.server!r} (create it on the hub's home page)")
        if model is not None and model.get("ready"):
            return model
        if model is None or not model.get("pending"):
            if identity != target.owner:
                raise Refused(f"{target.describe()} is not running; only {target.owner} can start it")
            if not self.settings.start_stopped_servers:
                raise Refused(f"{target.describe()} is not running; start it on the hub first")
            notify(f"starting {target.describe()} ...")
            self.audit("server-start", identity=identity, target=target.label)
            await self._start(target, notify)
        else:
            await self._wait_until_ready(target, notify)
        model = await self.hub.server_model(target)
        if not model or not model.get("ready"):
            raise Refused(f"{target.describe()} did not start; see the hub's home page")
        return model

    async def _start(self, target: Target, notify) -> None:
        # The hub answers a start request only when the spawn is done or slow; follow its
        # progress meanwhile, so the client sees each step as it happens.
        request = asyncio.ensure_future(self.hub.start(target))
        while not request.done():
            model = await self.hub.server_model(target)
            if model is not None and model.get("pending") == "spawn":
                break
            await asyncio.wait({request}, timeout=PENDING_POLL)
        failure = request.exception() if request.done() else None
        if failure is not None:
            if isinstance(failure, HubError):
                raise Refused(f"cannot start {target.describe()}: {failure.message}")
            raise failure
        await self._wait_until_ready(target, notify)
        try:
            await request
        except HubError as exc:
            raise Refused(f"cannot start {target.describe()}: {exc.message}") from None

    async def _wait_until_ready(self, target: Target, notify) -> None:
        failed: list[str] = []

        def on_event(event: dict) -> None:
            message = event.get("message") or ""
            if event.get("failed"):
                failed.append(message)
            elif message:
                notify(f"[{event.get('progress', '')}%] {message}" if event.get("progress") is not None else message)

        try:
            await self.hub.follow_progress(target, on_event, self.settings.start_timeout + 30)
        except HubError as exc:
            if exc.status != 599:  # 599: the stream timed out; the model says how it went
                raise Refused(f"cannot follow the start of {target.describe()}: {exc.message}") from None
        if failed:
            raise Refused(f"cannot start {target.describe()}: {failed[-1]}")

    async def _open_websocket(self, url_path: str, token: str, target: Target):
        request = HTTPRequest(
            websocket_url(self.settings.servers_url, url_path),
            headers={"Authorization": f"token {token}"},
            # TLS at this hop is the proxy's; the SSH host key below authenticates the server.
            validate_cert=False, connect_timeout=20, request_timeout=60,
        )
        try:
            return await websocket_connect(request, max_message_size=4 * CHUNK)
        except HTTPClientError as exc:
            if exc.code == 404:
                raise Refused(f"{target.describe()} has no SSH endpoint (it was started before SSH was "
                              "enabled, or its environment lacks gpulab); restart it") from None
            raise Refused(f"{target.describe()} refused the connection ({exc.code})") from None
        except (OSError, ssl.SSLError) as exc:
            raise Refused(f"cannot reach {target.describe()}: {exc}") from None

    async def _ssh(self, websocket, identity: str, target: Target) -> asyncssh.SSHClientConnection:
        seed = endpoint_seed(self.settings.master_secret, target.owner, target.server)
        sock, end = await socket_pair()
        pumps = [asyncio.ensure_future(end.relay(lambda data: _send(websocket, data))),
                 asyncio.ensure_future(_websocket_to_socket(websocket, end))]
        try:
            connection = await asyncssh.run_client(
                sock, config=None, host=f"endpoint-of-{target.label}", port=22, username=identity, password=endpoint_password(seed),
                known_hosts=([endpoint_host_key(seed).convert_to_public()], [], []),
                client_keys=None, agent_path=None, preferred_auth="password",
                keepalive_interval=30, connect_timeout=30, encryption_algs=FAST_CIPHERS[:1],
            )
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            for pump in pumps:
                pump.cancel()
            websocket.close()
            end.close()
            self.log.warning("SSH to the endpoint of %s failed: %s", target.label, exc)
            raise Refused(f"{target.describe()} did not prove its identity or refused the gateway") from None

        def cleanup(_connection=None):
            websocket.close()
            end.close()

        asyncio.ensure_future(_close_after(connection, cleanup))
        return connection


async def _send(websocket, data: bytes) -> None:
    try:
        await websocket.write_message(data, binary=True)
    except WebSocketClosedError:
        raise ConnectionError("the WebSocket closed") from None  # the session's normal end


async def _websocket_to_socket(websocket, end) -> None:
    try:
        while True:
            message = await websocket.read_message()
            if message is None:
                break
            await end.feed(message if isinstance(message, bytes) else message.encode())
    except (WebSocketClosedError, ConnectionError):
        pass
    finally:
        end.close()


async def _close_after(connection: asyncssh.SSHClientConnection, cleanup) -> None:
    await connection.wait_closed()
    cleanup()
