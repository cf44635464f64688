"""A refused spawn leaves no record behind.

JupyterHub stores a spawn's `user_options` and creates a named server's database row before
`Spawner.start` runs, so a spawn that gpulab refuses (unknown profile, quota, a full profile)
would otherwise keep `{"profile": "nope"}` as the default for every later spawn, and each
refused named server would count towards `named_server_limit_per_user`.
"""

from __future__ import annotations

import asyncio

from tornado import web


def is_refusal(error: BaseException) -> bool:
    """A 4xx raised before the server was started: the user's choice was not admitted."""
    return isinstance(error, web.HTTPError) and 400 <= error.status_code < 500


def forget_refused_spawn(spawner, accepted_options: dict | None) -> None:
    """Put back the options of the last admitted spawn; drop a named server never admitted."""
    orm_spawner = spawner.orm_spawner
    if orm_spawner is None:
        return
    orm_spawner.user_options = accepted_options
    spawner.user_options = dict(accepted_options or {})
    spawner.user.db.commit()
    if spawner.name and accepted_options is None:
        # JupyterHub still cleans up after the failed start; remove the row once it is done.
        asyncio.ensure_future(_remove_when_done(spawner))


async def _remove_when_done(spawner) -> None:
    future = spawner._spawn_future
    if future is not None:
        await asyncio.wait([future])
    if spawner.active or spawner.orm_spawner is None:
        return  # started again in the meantime: it is a server now
    user = spawner.user
    spawner.log.info("Removing %s: its spawn was refused and it never started", spawner._log_name)
    user.db.delete(spawner.orm_spawner)
    user.spawners.pop(spawner.name, None)
    user.db.commit()
