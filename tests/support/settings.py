"""Settings for tests: a few sections given as a dict, the rest defaults, as the loader makes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpulab.hub_config.settings import complete, deep_merge
from gpulab.hub_config.typed_settings import Settings

CONFIG_DIR = Path("/srv/gpulab")


def settings_values(sections: dict[str, Any] | None = None, config_dir: Path = CONFIG_DIR) -> dict:
    """Complete settings as a plain dict (defaults filled, paths resolved against config_dir)."""
    return complete(sections or {}, config_dir)


def typed_settings(sections: dict[str, Any] | None = None, config_dir: Path = CONFIG_DIR, **more: Any) -> Settings:
    """Typed settings from the sections given (as `sections` or keywords), defaults for the rest."""
    return Settings.from_values(settings_values(deep_merge(sections or {}, more), config_dir))


def handed_over(c, service: str) -> dict:
    """The settings the hub hands `service` as JSON (GPULAB_SERVICE_SETTINGS), from apply_config's `c`."""
    import json

    from gpulab.hub_config.services.config import SETTINGS_VARIABLE

    (spec,) = [spec for spec in c.JupyterHub.services if spec["name"] == service]
    return json.loads(spec["environment"][SETTINGS_VARIABLE])
