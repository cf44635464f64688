"""A small client for gpulab's REST APIs, used by the CLI and by the tests.

It reads where the hub is and which token to send from the environment, so the same
command works in a user server's terminal (JUPYTERHUB_API_TOKEN and GPULAB_URL are set
there) and on a laptop (export GPULAB_URL and GPULAB_TOKEN).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Mapping


class ClientError(Exception):
    """An API call that failed; `status` is the HTTP status (0 when the hub was unreachable)."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}" if status else message)


@dataclass(frozen=True)
class HubClient:
    url: str  # the hub's public address, ending in "/", e.g. http://127.0.0.1:8000/
    token: str
    timeout: float = 30.0
    verify: bool = True  # False only for gpulab's own loopback calls to a TLS proxy

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """`path` is relative to `url` (e.g. "hub/api/users"); returns the decoded JSON body."""
        payload = self.send(method, path, None if body is None else json.dumps(body).encode(), "application/json")
        return json.loads(payload) if payload else None

    def download(self, path: str) -> bytes:
        """The raw body of a GET (a file)."""
        return self.send("GET", path, None, None)

    def send(self, method: str, path: str, data: bytes | None, content_type: str | None) -> bytes:
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None and content_type:
            request.add_header("Content-Type", content_type)
        try:
            context = None if self.verify else ssl._create_unverified_context()
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise ClientError(exc.code, _error_message(exc.read(), exc.reason)) from None
        except urllib.error.URLError as exc:
            raise ClientError(0, f"cannot reach {self.url}: {exc.reason}") from None
        return payload


def _error_message(payload: bytes, fallback: str) -> str:
    try:
        return json.loads(payload).get("message") or fallback
    except (ValueError, AttributeError):
        return payload.decode(errors="replace").strip()[:300] or fallback


def client_from_environment(environ: Mapping[str, str] = os.environ) -> HubClient:
    url = environ.get("GPULAB_URL", "")
    token = environ.get("GPULAB_TOKEN") or environ.get("JUPYTERHUB_API_TOKEN", "")
    if not url or not token:
        raise ClientError(
            0,
            "set GPULAB_URL to the hub's address and GPULAB_TOKEN to an API token from "
            "<hub>/hub/token (both are set already inside a gpulab server)",
        )
    return HubClient(url.rstrip("/") + "/", token)


class AsyncHubClient:
    """The hub's REST API for gpulab's services (tornado's asynchronous client): one request
    path and one error, ClientError, for every service; each adds the calls it makes."""

    def __init__(self, api_url: str, token: str, timeout: float = 30.0):
        self.api_url = api_url.rstrip("/") + "/"  # e.g. http://127.0.0.1:8081/hub/api/
        self.token = token
        self.timeout = timeout

    async def request(self, method: str, path: str, body: Any = None, token: str | None = None, **extra) -> Any:
        """`path` is relative to the API URL; `token` asks as someone else (e.g. the user asking);
        `extra` goes to tornado's HTTPRequest (e.g. streaming_callback, request_timeout)."""
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

        request = HTTPRequest(
            self.api_url + path, method=method,
            headers={"Authorization": f"token {token or self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body), allow_nonstandard_methods=True,
            request_timeout=extra.pop("request_timeout", self.timeout), **extra,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as error:
            body = error.response.body if error.response is not None else b""
            raise ClientError(error.code, _error_message(body, error.message or str(error))) from None
        return json.loads(response.body) if response.body else None

