"""Answering while MLflow's application is built, so the hub need not wait for it.

JupyterHub starts its managed services one after the other and waits until each answers HTTP
before it starts the next and opens the hub. Building MLflow's application (imports, its
database checks and migrations, the auth store) takes 8 to 16 s on a busy 2-core machine, most
of a hub restart. So the service listens at once and builds the application in a thread:
until it is ready, the UI's address answers with a page that reloads itself (JupyterHub counts
any answer below 500 as "up"), and every other request a 503 with Retry-After, which MLflow's
clients retry.
"""

from __future__ import annotations

import json

RETRY_SECONDS = 2
PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{seconds}">
<title>MLflow is starting</title></head><body style="font-family: sans-serif; margin: 3em">
<p>MLflow is starting; this page reloads in {seconds} s.</p></body></html>"""


class WarmingUp:
    """An ASGI application that stands in until `ready(app)` hands it the real one."""

    def __init__(self, static_prefix: str):
        self.ui_paths = {static_prefix.rstrip("/") + "/", static_prefix.rstrip("/")}
        self.app = None

    def ready(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if self.app is not None and scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] == "lifespan":
            # MLflow's own lifespan only tidies its assistant's sandboxes, which gpulab switches off
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":  # a WebSocket before MLflow is ready: refused
            await send({"type": "websocket.close", "code": 1013})
            return
        if scope["path"] in self.ui_paths:
            await _answer(send, 200, "text/html; charset=utf-8", PAGE.format(seconds=RETRY_SECONDS).encode())
        else:
            body = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "MLflow is starting"}).encode()
            await _answer(send, 503, "application/json", body, [(b"retry-after", str(RETRY_SECONDS).encode())])


async def _answer(send, status: int, content_type: str, body: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
