"""The few hub API calls the gateway makes, with its service token (gpulab's one asynchronous hub client)."""

from __future__ import annotations

import json
from typing import Callable
from urllib.parse import quote

from gpulab.hub_config.client import AsyncHubClient, ClientError

from .targets import Target

SESSION_TOKEN_SECONDS = 60  # the minted token only opens the WebSocket, then it is deleted

HubError = ClientError  # the hub answered with an error status (`status`, `message`)


def server_path(target: Target) -> str:
    owner = quote(target.owner, safe="")
    return f"users/{owner}/servers/{quote(target.server, safe='')}" if target.server else f"users/{owner}/server"


class HubAPI(AsyncHubClient):
    """The gateway's calls: who a token belongs to, per-session tokens, servers and their start."""

    async def token_owner(self, token: str) -> tuple[str, list[str]] | None:
        """(user, the token's scopes), or None for a wrong, expired, or service token."""
        try:
            model = await self.request("GET", "user", token=token)
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
        model = await self.request("POST", f"users/{quote(user, safe='')}/tokens", body)
        return model["token"], model["id"]

    async def revoke_token(self, user: str, token_id: str) -> None:
        try:
            await self.request("DELETE", f"users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}")
        except HubError as exc:
            if exc.status != 404:
                raise

    async def server_model(self, target: Target) -> dict | None:
        """The server's model (stopped servers included), None if the hub has no such server."""
        user = await self.request("GET", f"users/{quote(target.owner, safe='')}?include_stopped_servers=1")
        return (user.get("servers") or {}).get(target.server)

    async def start(self, target: Target) -> None:
        try:
            await self.request("POST", server_path(target), {})
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

        await self.request("GET", server_path(target) + "/progress", streaming_callback=chunk, request_timeout=timeout)
