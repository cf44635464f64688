"""The few hub API calls the gateway makes, with its service token (tornado's async client)."""

from __future__ import annotations

import json
from typing import Callable
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .targets import Target

SESSION_TOKEN_SECONDS = 60  # the minted token only opens the WebSocket, then it is deleted


class HubError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


def _message(exc: HTTPClientError) -> str:
    try:
        return json.loads(exc.response.body).get("message") or exc.message
    except (ValueError, AttributeError):
        return exc.message or str(exc)


def server_path(target: Target) -> str:
    owner = quote(target.owner, safe="")
    return f"users/{owner}/servers/{quote(target.server, safe='')}" if target.server else f"users/{owner}/server"


class HubAPI:
    def __init__(self, api_url: str, token: str, timeout: float = 30):
        self.api_url = api_url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout
        self.http = AsyncHTTPClient()

    async def _call(self, method: str, path: str, body=None, token: str | None = None, **extra):
        request = HTTPRequest(
            self.api_url + path, method=method,
            headers={"Authorization": f"token {token or self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            request_timeout=extra.pop("request_timeout", self.timeout), **extra,
        )
        try:
            response = await self.http.fetch(request)
        except HTTPClientError as exc:
            raise HubError(exc.code, _message(exc)) from None
        return json.loads(response.body) if response.body else None

    async def token_owner(self, token: str) -> tuple[str, list[str]] | None:
        """(user, the token's scopes), or None for a wrong, expired, or service token."""
        try:
            model = await self._call("GET", "user", token=token)
        except HubError as exc:
            if exc.status in (401, 403, 404):
                return None
            raise
        if not model or model.get("kind", "user") != "user":
            return None
        return model["name"], list(model.get("scopes") or [])

    async def mint_access_token(self, user: str, target: Target) -> tuple[str, str]:
        """(token, id): a token of `user` that may only access the target server.

        The hub refuses it (HubError 400/403/404) when `user` may not access that server:
        not theirs, not shared with them, no role that grants it.
        """
        body = {"scopes": [f"access:servers!{target.scope_filter}"], "expires_in": SESSION_TOKEN_SECONDS,
                "note": f"gpulab ssh session to {target.label}"}
        model = await self._call("POST", f"users/{quote(user, safe='')}/tokens", body)
        return model["token"], model["id"]

    async def revoke_token(self, user: str, token_id: str) -> None:
        try:
            await self._call("DELETE", f"users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}")
        except HubError as exc:
            if exc.status != 404:
                raise

    async def server_model(self, target: Target) -> dict | None:
        """The server's model (stopped servers included), None if the hub has no such server."""
        user = await self._call("GET", f"users/{quote(target.owner, safe='')}?include_stopped_servers=1")
        return (user.get("servers") or {}).get(target.server)

    async def start(self, target: Target) -> None:
        try:
            await self._call("POST", server_path(target), {})
        except HubError as exc:
            if not (exc.status == 400 and "pending" in exc.message):
                raise

    async def follow_progress(self, target: Target, on_event: Callable[[dict], None], timeout: float) -> None:
        """Pass each progress event of a starting server to `on_event` until it is ready or failed."""
        buffer = b""

        def chunk(data: bytes) -> None:
            nonlocal buffer
            buffer += data
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.splitlines():
                    if line.startswith(b"data:"):
                        try:
                            on_event(json.loads(line[5:]))
                        except ValueError:
                            pass

        await self._call("GET", server_path(target) + "/progress", streaming_callback=chunk, request_timeout=timeout)
