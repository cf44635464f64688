"""What every spawner of one hub shares: the parsed profiles and catalog, the GPU inventory, the
ledger's connection, the cluster watch.

It is kept in the hub's application settings (the dict JupyterHub hands every User as
`user.settings`), not in module globals: it lives and ends with its hub, two hubs in one process
do not share it, and nothing outside a hub can reach it. A spawner made without a hub (a test
building a pod) keeps its own.
"""

from __future__ import annotations

from typing import Any, Callable

SETTINGS_KEY = "gpulab_shared"


def shared_values(spawner) -> dict:
    """The dict this spawner's hub shares between its spawners."""
    settings = getattr(spawner.user, "settings", None)
    if isinstance(settings, dict):
        return settings.setdefault(SETTINGS_KEY, {})
    return spawner.__dict__.setdefault("_gpulab_own_shared", {})


def shared_value(spawner, key: tuple, make: Callable[[], Any]) -> Any:
    """The value under `key`, made once per hub."""
    values = shared_values(spawner)
    if key not in values:
        values[key] = make()
    return values[key]


def shared_made_from(spawner, name: str, source: Any, make: Callable[[Any], Any]) -> Any:
    """`make(source)`, made once per hub for as long as `source` stays equal: kept under `name`
    beside what it was made from. `source` is typed settings (frozen values, compared by equality)."""
    values = shared_values(spawner)
    held = values.get(name)
    if held is None or held[0] != source:
        held = values[name] = (source, make(source))
    return held[1]
