"""TensorBoard settings in the hub's configuration: a pure `apply_config` step.

User servers learn them from one environment variable; the in-server part (extension.py,
listed in gpulab.spawner.singleuser.PARTS) and the launcher entry read it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from gpulab.hub_config.registry import Extension

if TYPE_CHECKING:  # this module loads in user servers (extension.py), which need no pydantic
    from gpulab.hub_config.typed_settings import Settings

SETTINGS_VARIABLE = "GPULAB_TENSORBOARD"


@dataclass(frozen=True)
class ServerSettings:
    """The `tensorboard` section as a user server reads it from SETTINGS_VARIABLE: a frozen
    dataclass, not the settings model, so servers import no pydantic (a unit test keeps the two
    in step). Without the variable TensorBoard is off."""

    enabled: bool = False
    default_logdir: str = "~/logs"
    idle_timeout_seconds: int = 1800
    max_instances: int = 4

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        return cls(**json.loads(environ.get(SETTINGS_VARIABLE) or "{}"))


def server_settings(s: Settings) -> ServerSettings:
    return ServerSettings(**s.tensorboard.model_dump())


def server_environment(s: Settings) -> dict:
    return {SETTINGS_VARIABLE: json.dumps(asdict(server_settings(s)))}


def update_tensorboard(s: Settings, c) -> None:
    """Nothing in the hub itself: TensorBoard runs inside each user server."""


EXTENSION = Extension("tensorboard", 60, update_tensorboard, server_environment=server_environment)
