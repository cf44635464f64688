"""Run code in a user's real kernel through the hub's proxy (Jupyter's REST and WebSocket APIs).

The code runs in a kernel process of the user's server, as the user's account, with the
supplementary groups and environment that server started with: what a notebook cell can really do.
`Kernel` keeps one kernel for several snippets; `run_in_kernel` starts one, runs a snippet, and
shuts it down.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from gpulab.hub_config.client import HubClient


class KernelError(RuntimeError):
    """The code raised; the message has the kernel's traceback and what it printed."""


class Kernel:
    def __init__(self, hub_url: str, user: str, token: str, server: str = ""):
        self.hub_url = hub_url
        self.path = f"user/{user}/{server + '/' if server else ''}"
        self.client = HubClient(hub_url, token)
        self.token = token
        self.kernel_id = self.client.request("POST", self.path + "api/kernels", {"name": "python3"})["id"]

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute `code`; return what it printed. Raises KernelError with the traceback if it failed."""
        return asyncio.run(asyncio.wait_for(self._run(code), timeout))

    def shutdown(self) -> None:
        self.client.request("DELETE", self.path + f"api/kernels/{self.kernel_id}")

    async def send(self, channel: str, msg_type: str, content: dict) -> tuple[WebSocketClientConnection, str]:
        """Open the kernel's channels WebSocket through the server and send one message on `channel`:
        the connection (the caller reads the replies and closes it) and the message's id."""
        url = self.hub_url.replace("http", "ws", 1) + self.path + f"api/kernels/{self.kernel_id}/channels"
        connection = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.token}"}))
        msg_id = uuid.uuid4().hex
        connection.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": msg_type, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": channel, "buffers": [], "content": content,
        }))
        return connection, msg_id

    async def _run(self, code: str) -> str:
        connection, msg_id = await self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        output, error = [], None
        try:
            while True:
                raw = await connection.read_message()
                if raw is None:
                    raise KernelError("the kernel's websocket closed")
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["header"]["msg_type"], message["content"]
                if kind == "stream":
                    output.append(content["text"])
                elif kind == "error":
                    error = "\n".join(content["traceback"])
                elif kind == "status" and content["execution_state"] == "idle":
                    break
        finally:
            connection.close()
        if error is not None:
            raise KernelError(f"{error}\n--- output ---\n{''.join(output)}")
        return "".join(output)


def run_in_kernel(hub, user: str, code: str, token: str, server: str = "", timeout: float = 120) -> str:
    kernel = Kernel(hub.url, user, token, server)
    try:
        return kernel.run(code, timeout)
    finally:
        kernel.shutdown()
