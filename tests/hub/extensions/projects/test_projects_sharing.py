"""Sharing a running server with a project through JupyterHub's sharing API, and editing together.

Real servers behind the hub's proxy; teammates use their own hub tokens. The real-time
collaboration check joins the document room of jupyter-collaboration from two clients
(the owner and a teammate) speaking the Yjs sync protocol with pycrdt, as JupyterLab does;
not covered: JupyterLab's own editor widgets in a browser.
"""

from __future__ import annotations

import asyncio

import pytest
from pycrdt import Doc, Text, YMessageType, create_sync_message, create_update_message, handle_sync_message
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.support.hub import wait_for
from tests.support.projects import Person, project_settings, status_of


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    return module_hub_factory.start(project_settings(projects_root, account_prefix, "s", sharing_check_seconds=2))


@pytest.fixture(scope="module")
def team(hub):
    alice, bob, carol, dave = (Person(hub, n) for n in ("alice", "bob", "carol", "dave"))
    alice.api("POST", "", {"name": "vision"})
    alice.api("POST", "/vision/members", {"name": "bob", "role": "editor"})
    alice.api("POST", "/vision/members", {"name": "carol", "role": "viewer"})
    hub.spawn("bob")
    return alice, bob, carol, dave


def test_a_member_shares_a_server_teammates_open_it_and_the_owner_revokes(hub, team):
    alice, bob, carol, dave = team
    bob.write("shared-notes.md", "hello team")
    assert status_of(lambda: carol.read("shared-notes.md", owner="bob")) == 403  # not shared yet

    servers = bob.api("POST", "/vision/shared-servers", {"server": ""})["servers"]
    assert [(s["owner"], s["server"], s["url"], s["members"]) for s in servers] == [
        ("bob", "", "/user/bob/", ["alice", "carol"])]
    # every member sees it on the project, and opens it through the proxy with their own identity
    assert carol.api("GET", "/vision/shared-servers")["servers"] == servers
    # bob's server trusted its earlier answer about carol for up to sharing_check_seconds
    wait_for(lambda: status_of(lambda: carol.read("shared-notes.md", owner="bob")) == 200, 30, "carol's access")
    assert carol.read("shared-notes.md", owner="bob") == "hello team"
    assert alice.read("shared-notes.md", owner="bob") == "hello team"
    # a non-member can neither open it nor list the project's shared servers
    assert status_of(lambda: dave.read("shared-notes.md", owner="bob")) == 403
    assert status_of(lambda: dave.api("GET", "/vision/shared-servers")) == 403
    # only the owner (or an admin) stops sharing it
    assert status_of(lambda: carol.api("DELETE", "/vision/shared-servers/bob")) == 403
    bob.api("DELETE", "/vision/shared-servers/bob")
    assert bob.api("GET", "/vision/shared-servers")["servers"] == []
    wait_for(lambda: status_of(lambda: carol.read("shared-notes.md", owner="bob")) == 403, 30, "carol's access to end")
    actions = [e["action"] for e in alice.api("GET", "/vision/audit")["entries"]][:2]
    assert actions == ["unshare-server", "share-server"]


def test_sharing_needs_a_server_and_membership(hub, team):
    alice, bob, carol, dave = team
    # like JupyterHub, a stopped server may be shared (teammates open it once it runs); a missing one not
    carol.api("POST", "/vision/shared-servers", {"server": ""})
    carol.api("DELETE", "/vision/shared-servers/carol")
    assert status_of(lambda: bob.api("POST", "/vision/shared-servers", {"server": "nope"})) == 404
    assert status_of(lambda: dave.api("POST", "/vision/shared-servers", {"server": ""})) == 403


def test_teammates_edit_the_same_document_in_real_time(hub, team):
    alice, bob, carol, dave = team
    bob.write("together.txt", "start\n")
    bob.api("POST", "/vision/shared-servers", {"server": ""})
    wait_for(lambda: status_of(lambda: carol.read("together.txt", owner="bob")) == 200, 30, "carol's access")
    session = carol.client.request("PUT", "user/bob/api/collaboration/session/together.txt",
                                   {"format": "text", "type": "file"})
    room = f"text:file:{session['fileId']}?sessionId={session['sessionId']}"
    seen_by_bob = asyncio.run(asyncio.wait_for(edit_together(hub.url, room, bob.token, carol.token), 60))
    assert "carol was here" in seen_by_bob
    wait_for(lambda: "carol was here" in bob.read("together.txt"), 30, "the shared document to be saved")
    bob.api("DELETE", "/vision/shared-servers/bob")
    wait_for(lambda: status_of(lambda: carol.client.request(
        "PUT", "user/bob/api/collaboration/session/together.txt", {"format": "text", "type": "file"})) == 403,
        30, "carol's access to end")


class RoomClient:
    """One participant of a Yjs room over the collaboration WebSocket (the y-websocket protocol)."""

    def __init__(self, connection):
        self.connection = connection
        self.doc = Doc()
        self.text = self.doc.get("source", type=Text)
        self.doc.observe(lambda event: self.connection.write_message(create_update_message(event.update), binary=True))

    @classmethod
    async def join(cls, hub_url: str, room: str, token: str) -> "RoomClient":
        url = hub_url.replace("http://", "ws://") + f"user/bob/api/collaboration/room/{room}"
        client = cls(await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"})))
        client.connection.write_message(create_sync_message(client.doc), binary=True)
        return client

    async def pump_until(self, condition, what: str) -> None:
        while not condition():
            message = await self.connection.read_message()
            if message is None:
                raise RuntimeError(f"the room closed before {what}")
            if message[0] == YMessageType.SYNC:
                reply = handle_sync_message(message[1:], self.doc)
                if reply is not None:
                    self.connection.write_message(reply, binary=True)


async def edit_together(hub_url: str, room: str, bob_token: str, carol_token: str) -> str:
    bob = await RoomClient.join(hub_url, room, bob_token)
    carol = await RoomClient.join(hub_url, room, carol_token)
    await bob.pump_until(lambda: "start" in str(bob.text), "bob saw the file")
    await carol.pump_until(lambda: "start" in str(carol.text), "carol saw the file")
    carol.text += "carol was here\n"
    await bob.pump_until(lambda: "carol was here" in str(bob.text), "bob saw carol's edit")
    for client in (bob, carol):
        client.connection.close()
    return str(bob.text)
