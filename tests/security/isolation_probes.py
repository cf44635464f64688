"""How the isolation matrix knocks: HTTP and WebSocket requests holding someone's token (or
none), and commands run as someone's system account.

Every probe answers one question, "did `who` get in?", so one test asserts the owner does
(the control: the probe can see access when there is some) and the intruder does not.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from dataclasses import dataclass
from typing import Callable

import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.security.isolation_world import World

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Cell:
    """One cell of the matrix: `probe(world, who)` is True when `who` got in."""

    id: str
    probe: Callable[[World, str], bool]
    intruders: tuple[str, ...]
    owner: str = "alice"


def headers(world: World, who: str) -> dict[str, str]:
    return {} if who == ANONYMOUS else {"Authorization": f"Bearer {world.tokens[who]}"}


def http(world: World, who: str, method: str, url: str, json=None, data: bytes | None = None) -> requests.Response:
    return requests.request(method, url, headers=headers(world, who), json=json, data=data, allow_redirects=False,
                            timeout=60)


def granted(response: requests.Response, marker: str | None = None) -> bool:
    """A 2xx that (for reads) carries what only the owner should see. A redirect to the
    hub's sign-in, a 403/404 or a 2xx without the marker (an empty listing) are refusals."""
    return 200 <= response.status_code < 300 and (marker is None or marker in response.text)


def websocket_opens(world: World, who: str, url: str) -> bool:
    """Whether the WebSocket upgrade succeeds (it is closed at once)."""
    async def attempt() -> bool:
        try:
            connection = await websocket_connect(HTTPRequest(url.replace("http", "ws", 1), headers=headers(world, who),
                                                             request_timeout=60))
        except HTTPClientError:
            return False
        connection.close()
        return True

    return asyncio.run(attempt())


def account_command(uid: int, *command: str) -> tuple[str, ...]:
    """`command` for a fresh process of account `uid` with its groups from /etc/group (as is for root)."""
    if uid == 0:
        return command
    return ("setpriv", f"--reuid={uid}", f"--regid={pwd.getpwuid(uid).pw_gid}", "--init-groups", *command)


def as_uid(uid: int, *command: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(account_command(uid, *command), capture_output=True, input=stdin, timeout=120)


def uid_of(world: World, who: str) -> int:
    return world.accounts[who].pw_uid


def as_account(world: World, who: str, *command: str) -> subprocess.CompletedProcess:
    """`command` in a fresh process of `who`'s system account."""
    return as_uid(uid_of(world, who), *command)


def reads(world: World, who: str, path: str, marker: str | None = None) -> bool:
    """`who` can read the file (and, with a marker, sees it in there)."""
    result = as_account(world, who, "cat", path)
    return result.returncode == 0 and (marker is None or marker.encode() in result.stdout)


def lists(world: World, who: str, path: str, marker: str) -> bool:
    result = as_account(world, who, "ls", "-a", path)
    return result.returncode == 0 and marker.encode() in result.stdout


def writes(world: World, who: str, folder: str) -> bool:
    """`who` can create a file in `folder` (checked on disk, then removed)."""
    target = f"{folder}/written-by-{who}"
    as_account(world, who, "sh", "-c", f"echo x > '{target}'")
    made = os.path.exists(target)
    if made:
        os.remove(target)
    return made
