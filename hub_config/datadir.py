"""The data directory: everything gpulab writes on one machine lives under it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from .typed_settings import Settings


def prepare_data_dir(s: Settings) -> Path:
    """Create the data directory (private to the hub's user) and the folders the hub writes to."""
    data_dir = Path(s.hub.data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)  # it holds the cookie secret and the databases
    for sub in ("logs", "logs/servers", "proxy"):
        (data_dir / sub).mkdir(mode=0o700, exist_ok=True)
    return data_dir
