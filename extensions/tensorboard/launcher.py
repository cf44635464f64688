"""The "TensorBoard" item in the JupyterLab launcher: opens the folder picker at
<base_url>tensorboard/ (handlers.py), which starts one TensorBoard per folder."""

from __future__ import annotations

import os
from pathlib import Path

from gpulab.spawner.singleuser.launcher import launcher_only

from .config import ServerSettings

ICON = Path(__file__).parent / "icons" / "tensorboard.svg"


def launcher_entry(environ=os.environ) -> dict:
    enabled = ServerSettings.from_environment(environ).enabled
    return launcher_only("tensorboard", "TensorBoard", ICON, "tensorboard/", enabled=enabled)
