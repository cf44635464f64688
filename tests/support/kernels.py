"""Run Python inside a user's server: a real kernel, started through the hub's proxy.

`run_in_kernel(hub, user, code)` starts a kernel in the user's running server (Jupyter REST
API), executes `code` over the kernel's WebSocket and returns what it printed. The code runs
as the server's account, with the environment the spawner gave the server.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from gpulab.hub_config.client import HubClient


class KernelError(AssertionError):
    """The code raised; the message has the kernel's traceback."""


def run_in_kernel(hub, user: str, code: str, token: str, server: str = "", timeout: float = 120) -> str:
    base = f"user/{user}/{server + '/' if server else ''}"
    client = HubClient(hub.url, token)
    kernel = client.request("POST", base + "api/kernels", {"name": "python3"})
    try:
        return asyncio.run(asyncio.wait_for(_execute(hub.url, base, kernel["id"], token, code), timeout))
    finally:
        client.request("DELETE", base + f"api/kernels/{kernel['id']}")


async def _execute(hub_url: str, base: str, kernel_id: str, token: str, code: str) -> str:
    url = hub_url.replace("http", "ws", 1) + base + f"api/kernels/{kernel_id}/channels"
    connection = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    connection.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    output, error = [], None
    try:
        while True:
            raw = await connection.read_message()
            if raw is None:
                raise KernelError("the kernel connection closed")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                error = "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        connection.close()
    if error:
        raise KernelError(f"{error}\n--- output ---\n{''.join(output)}")
    return "".join(output)
