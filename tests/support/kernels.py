"""Run code in a user's real kernel through the hub's proxy (Jupyter's REST and WebSocket APIs).

The code runs in a kernel process of the user's server, as the user's account, with the
supplementary groups that server started with: what a notebook cell can really do.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from gpulab.hub_config.client import HubClient


class Kernel:
    def __init__(self, hub_url: str, user: str, token: str, server: str = ""):
        self.base = f"{hub_url}user/{user}/{server + '/' if server else ''}"
        self.client = HubClient(hub_url, token)
        self.token = token
        self.kernel_id = self.client.request("POST", self.base[len(hub_url):] + "api/kernels", {"name": "python3"})["id"]

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute `code`; return what it printed. Raises RuntimeError with the traceback if it failed."""
        return asyncio.run(asyncio.wait_for(self._run(code), timeout))

    async def _run(self, code: str) -> str:
        url = self.base.replace("http://", "ws://") + f"api/kernels/{self.kernel_id}/channels"
        connection = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.token}"}))
        msg_id = uuid.uuid4().hex
        connection.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        output, error = [], None
        try:
            while True:
                raw = await connection.read_message()
                if raw is None:
                    raise RuntimeError("the kernel's websocket closed")
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["header"]["msg_type"]
                if kind == "stream":
                    output.append(message["content"]["text"])
                elif kind == "error":
                    error = "\n".join(message["content"]["traceback"])
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    break
        finally:
            connection.close()
        if error is not None:
            raise RuntimeError(error)
        return "".join(output)
