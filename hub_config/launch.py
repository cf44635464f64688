"""How `gpulab up` hands settings to the hub process, and how the hub reads them back.

`gpulab up` validates first (so a bad file exits 2 before anything starts), then runs
JupyterHub (`hub_app.GpulabHub`: stock, its services started together) with gpulab's
`jupyterhub_config.py`, passing the settings file and the
command-line overrides in two environment variables. On Kubernetes the hub image sets
the same variables, so both shapes go through the same file.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Mapping

from .settings import LoadedSettings, load_settings

ENV_SETTINGS_FILE = "GPULAB_CONFIG"
ENV_OVERRIDES = "GPULAB_OVERRIDES"
CONFIG_D = "jupyterhub_config.d"


def hub_config_file() -> Path:
    return Path(str(resources.files("gpulab.hub_config") / "jupyterhub_config.py"))


def hub_environment(settings_file: Path | None, overrides: dict) -> dict:
    """The variables `settings_from_environment` reads back in the hub process."""
    return {
        ENV_SETTINGS_FILE: str(settings_file.resolve()) if settings_file else "",
        ENV_OVERRIDES: json.dumps(overrides),
    }


def settings_from_environment(environ: Mapping[str, str] = os.environ) -> LoadedSettings:
    path = environ.get(ENV_SETTINGS_FILE) or None
    overrides = json.loads(environ.get(ENV_OVERRIDES) or "{}")
    return load_settings(Path(path) if path else None, overrides)


def config_d_files(config_dir: Path) -> list[Path]:
    """The escape hatch: `jupyterhub_config.d/*.py` beside the settings file, loaded last, in name order."""
    return sorted((config_dir / CONFIG_D).glob("*.py"))
