"""The keys API and the "SSH keys" page: thin handlers over KeyStore and the connection info."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field
from tornado import web

from gpulab.hub_config.services.errors import Invalid, NotFound
from gpulab.hub_config.services.web import ApiHandler, PageHandler

from .publickeys import MAX_COMMENT, parse_public_key
from .store import KeyStore


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as openapi.yaml says: a misspelt field is a 400, not ignored

    public_key: str = Field(min_length=1, max_length=20000, description="one OpenSSH public key line")
    comment: str = Field(default="", max_length=MAX_COMMENT)


@dataclass(frozen=True)
class Endpoint:
    """Where clients reach the gateway (its settings' public host and port) and the host key it shows."""

    host: str
    port: int
    host_key: str  # the public key, as an OpenSSH line
    host_key_fingerprint: str


def connection_info(endpoint: Endpoint, user: str) -> dict:
    """What a client needs: host, port, user name, and the gateway's host key to trust."""
    host, port, host_key = endpoint.host, endpoint.port, endpoint.host_key
    known_host = f"[{host}]:{port}" if port != 22 else host
    return {
        "host": host, "port": port, "user": user, "host_key": host_key,
        "host_key_fingerprint": endpoint.host_key_fingerprint,
        "known_hosts_line": f"{known_host} {host_key}",
        "named_server_separator": "+",
    }


def ssh_config_block(info: dict, server: str = "", alias: str = "") -> str:
    """A ~/.ssh/config entry for the user's default server, or one of their named servers."""
    user = info["user"] + (f"+{server}" if server else "")
    alias = alias or ("gpulab" + (f"-{server}" if server else ""))
    return "\n".join([
        f"Host {alias}",
        f"    HostName {info['host']}",
        f"    Port {info['port']}",
        f"    User {user}",
        f"    # gateway host key {info['host_key_fingerprint']}; add it to known_hosts with:",
        f"    #   echo '{info['known_hosts_line']}' >> ~/.ssh/known_hosts",
    ]) + "\n"


class KeysHandler(ApiHandler):
    @property
    def keys(self) -> KeyStore:
        return self.settings["ssh_keys"]

    async def get(self):
        records = await asyncio.to_thread(self.keys.list, self.user_name)
        self.write_json([record.as_json() for record in records])

    async def post(self):
        request = self.body_as(NewKey)
        key = parse_public_key(request.public_key, request.comment)
        record = await asyncio.to_thread(self.keys.add, self.user_name, key)
        self.write_json(record.as_json(), status=201)


def key_id(text: str) -> int:
    """A key id from the URL; anything that is not one names no key (404, like a missing one)."""
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise NotFound(f"you have no SSH key with id {text[:40]!r}")
    return int(text)


def server_name(text: str) -> str:
    """A named server as the ssh_config block writes it: no spaces or control characters,
    which would add lines of its own to the user's ~/.ssh/config."""
    if len(text) > 255 or not SERVER_NAME.match(text):
        raise Invalid("server must be a server name: letters, digits and - _ . only, at most 255")
    return text


SERVER_NAME = re.compile(r"^[\w.-]*$", re.ASCII)


class KeyHandler(ApiHandler):
    async def delete(self, key_text: str):
        await asyncio.to_thread(self.settings["ssh_keys"].delete, self.user_name, key_id(key_text))
        self.set_status(204)
        self.finish()


class ConnectionHandler(ApiHandler):
    def get(self):
        info = connection_info(self.settings["ssh_endpoint"], self.user_name)
        server = server_name(self.get_argument("server", ""))
        self.write_json({**info, "ssh_config": ssh_config_block(info, server)})


class OpenApiDocument(ApiHandler):
    """The API's description, as committed in the repository."""

    def get(self):
        self.set_header("Content-Type", "application/yaml")
        self.finish(resources.files("gpulab.extensions.ssh").joinpath("openapi.yaml").read_text())


class KeysPage(PageHandler):
    @web.authenticated
    async def get(self):
        records = await asyncio.to_thread(self.settings["ssh_keys"].list, self.user_name)
        info = connection_info(self.settings["ssh_endpoint"], self.user_name)
        self.render_page("ssh_keys.html", keys=records, info=info, ssh_config=ssh_config_block(info))


ROUTES = [
    ("api/openapi.yaml", OpenApiDocument),
    ("api/keys", KeysHandler),
    (r"api/keys/([^/]+)", KeyHandler),
    ("api/connection", ConnectionHandler),
    ("", KeysPage),
]
