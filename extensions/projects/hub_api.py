"""The hub's REST API as the projects service uses it (gpulab's one asynchronous hub client).

The service calls with its own token (its least-privilege role: read users, manage groups,
revoke users' access to shared servers). Sharing a server is done with the token of the
person asking, so the hub itself checks that the server is theirs.
"""

from __future__ import annotations

from urllib.parse import quote

from gpulab.hub_config.client import AsyncHubClient

from .core import HubRefused, HubUser


def _q(name: str) -> str:
    return quote(name, safe="")


class HubApi(AsyncHubClient):
    def __init__(self, api_url: str, token: str, timeout: float = 20.0):
        super().__init__(api_url, token, timeout)

    # ------------------------------------------------------------ users

    async def user(self, name: str) -> HubUser | None:
        try:
            model = await self.request("GET", f"users/{_q(name)}")
        except HubRefused as refused:
            if refused.status == 404:
                return None
            raise
        return HubUser(model["name"], bool(model.get("admin")), tuple(model.get("groups") or ()))

    # ------------------------------------------------------------ groups

    async def group(self, name: str) -> dict | None:
        try:
            return await self.request("GET", f"groups/{_q(name)}")
        except HubRefused as refused:
            if refused.status == 404:
                return None
            raise

    async def group_exists(self, name: str) -> bool:
        return await self.group(name) is not None

    async def group_members(self, name: str) -> set[str]:
        group = await self.group(name)
        return set(group["users"]) if group else set()

    async def group_names(self) -> list[str]:
        names, offset = [], 0
        while True:
            page = await self.request("GET", f"groups?offset={offset}&limit=200")
            names += [group["name"] for group in page]
            if len(page) < 200:
                return names
            offset += len(page)

    async def create_group(self, name: str) -> None:
        try:
            await self.request("POST", f"groups/{_q(name)}", {})
        except HubRefused as refused:
            if refused.status != 409:  # it exists already
                raise

    async def delete_group(self, name: str) -> None:
        try:
            await self.request("DELETE", f"groups/{_q(name)}")
        except HubRefused as refused:
            if refused.status != 404:
                raise

    async def add_to_group(self, name: str, users: list[str]) -> None:
        await self.request("POST", f"groups/{_q(name)}/users", {"users": users})

    async def remove_from_group(self, name: str, users: list[str]) -> None:
        await self.request("DELETE", f"groups/{_q(name)}/users", {"users": users})

    # ------------------------------------------------------------ sharing

    async def check_server(self, owner: str, server: str, token: str) -> None:
        """Raise HubRefused (404) unless `owner` has that server; asked with the owner's token."""
        await self.request("GET", f"shares/{_q(owner)}/{_q(server)}", token=token)

    async def share_with_user(self, owner: str, server: str, user: str, token: str) -> None:
        await self.request("POST", f"shares/{_q(owner)}/{_q(server)}", {"user": user}, token=token)

    async def revoke_user_share(self, user: str, owner: str, server: str) -> None:
        """Take away `user`'s share of the server (the service's own users:shares scope)."""
        try:
            await self.request("DELETE", f"users/{_q(user)}/shared/{_q(owner)}/{_q(server)}")
        except HubRefused as refused:
            if refused.status != 404:  # already gone
                raise

