"""Which server an SSH login names: `alice` is alice's default server, `alice+gpu` her named
server `gpu`. The separator is the last "+", so a hub user whose name has a "+" reaches
their default server with a trailing one (`a+b+`)."""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "+"


@dataclass(frozen=True)
class Target:
    owner: str
    server: str  # "" for the default server

    @property
    def label(self) -> str:
        """`alice` or `alice/gpu`, as JupyterHub writes a server in scopes and logs."""
        return f"{self.owner}/{self.server}" if self.server else self.owner

    @property
    def scope_filter(self) -> str:
        return f"server={self.owner}/{self.server}"

    @property
    def login(self) -> str:
        return f"{self.owner}{SEPARATOR}{self.server}" if self.server else self.owner

    def describe(self) -> str:
        return f"{self.owner}'s server {self.server!r}" if self.server else f"{self.owner}'s default server"


class BadLogin(ValueError):
    """An SSH user name that names no server."""


def parse_login(login: str) -> Target:
    owner, separator, server = login.rpartition(SEPARATOR)
    if not separator:
        owner, server = login, ""
    if not owner or any(ch in owner + server for ch in "/\0\n\r"):
        raise BadLogin(f"{login!r} is not a server: use NAME or NAME{SEPARATOR}SERVER")
    return Target(owner, server)


def token_allows(scopes: list[str], target: Target) -> bool:
    """Whether a token's (expanded) scopes grant access to the target server.

    A token used as the SSH password must itself carry `access:servers` for the server, so a
    narrowly scoped token (say, one that only reads names) cannot open a shell.
    """
    allowed = {"access:servers", f"access:servers!user={target.owner}",
               f"access:servers!server={target.owner}/{target.server}"}
    return any(scope in allowed for scope in scopes)
