"""TensorBoard settings in the hub's configuration: a pure `apply_config` step.

User servers learn them from one environment variable; the in-server part (extension.py,
listed in gpulab.extensions.singleuser.PARTS) and the launcher entry read it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gpulab.hub_config.registry import Extension

if TYPE_CHECKING:  # this module loads in user servers (extension.py), which need no pydantic
    from gpulab.hub_config.typed_settings import Settings

SETTINGS_VARIABLE = "GPULAB_TENSORBOARD"


def server_settings(s: Settings) -> dict:
    """The `tensorboard` section, as the server reads it back (Tensorboard.model_validate)."""
    return s.tensorboard.model_dump(mode="json")


def server_environment(s: Settings) -> dict:
    return {SETTINGS_VARIABLE: json.dumps(server_settings(s))}


def update_tensorboard(s: Settings, c) -> None:
    """Nothing in the hub itself: TensorBoard runs inside each user server."""


EXTENSION = Extension("tensorboard", 60, update_tensorboard, server_environment=server_environment,
                      typed=True)
