"""The hub's hooks, composed: one callable per hook runs each contributor's in turn."""

from __future__ import annotations

from typing import Any, Callable

from jupyterhub.utils import maybe_future


class SpawnHooks:
    """`Spawner.pre_spawn_hook`: each hook in order; a hook that raises stops the spawn."""

    def __init__(self, hooks: list[Callable]):
        self.hooks = list(hooks)

    async def __call__(self, spawner) -> None:
        for hook in self.hooks:
            await maybe_future(hook(spawner))


class AuthHooks:
    """`Authenticator.post_auth_hook`: each hook gets the authentication the previous returned."""

    def __init__(self, hooks: list[Callable]):
        self.hooks = list(hooks)

    async def __call__(self, authenticator, handler, authentication: dict[str, Any]) -> dict[str, Any]:
        for hook in self.hooks:
            authentication = await maybe_future(hook(authenticator, handler, authentication))
            if authentication is None:
                break  # refused: later hooks have nothing to change
        return authentication
