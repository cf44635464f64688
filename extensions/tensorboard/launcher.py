"""The "TensorBoard" item in the JupyterLab launcher: opens the folder picker at
<base_url>tensorboard/ (handlers.py), which starts one TensorBoard per folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gpulab.extensions.singleuser.launcher import launcher_only

from .config import SETTINGS_VARIABLE

ICON = Path(__file__).parent / "icons" / "tensorboard.svg"


def launcher_entry(environ=os.environ) -> dict:
    settings = json.loads(environ.get(SETTINGS_VARIABLE) or "{}")
    return launcher_only("tensorboard", "TensorBoard", ICON, "tensorboard/", enabled=bool(settings.get("enabled")))
