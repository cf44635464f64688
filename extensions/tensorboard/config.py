"""TensorBoard settings in the hub's configuration: a pure `apply_config` step.

User servers learn them from one environment variable; the in-server part (extension.py,
listed in gpulab.extensions.singleuser.PARTS) and the launcher entry read it.
"""

from __future__ import annotations

import json

from gpulab.hub_config.registry import Extension

SETTINGS_VARIABLE = "GPULAB_TENSORBOARD"


def server_settings(values: dict) -> dict:
    tensorboard = values["tensorboard"]
    return {
        "enabled": tensorboard["enabled"],
        "default_logdir": tensorboard["default_logdir"],
        "idle_timeout_seconds": tensorboard["idle_timeout_seconds"],
        "max_instances": tensorboard["max_instances"],
    }


def server_environment(values: dict) -> dict:
    return {SETTINGS_VARIABLE: json.dumps(server_settings(values))}


def update_tensorboard(values: dict, c) -> None:
    """Nothing in the hub itself: TensorBoard runs inside each user server."""


EXTENSION = Extension("tensorboard", 60, update_tensorboard, server_environment=server_environment)
