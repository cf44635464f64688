"""The request that submits a script or command job (`POST jobs`), built once for every client.

`gpulab run train.py -- ARGS` and JupyterLab's "Run as a gpulab job…" send the same body, so a
job submitted from either runs the same way. Pure functions: the caller packs the snapshot.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Sequence


def script_command(script: Path, folder: Path, arguments: Sequence[str]) -> list[str]:
    """The environment's python on the script's path inside the snapshot of `folder`, then its
    arguments (ValueError when the script is not inside `folder`)."""
    return ["python", script.relative_to(folder).as_posix(), *arguments]


def job_request(kind: str, command: list[str], name: str, folder: Path, snapshot: bytes, *,
                max_retries: int = 0, nodes: int = 1, **options) -> dict:
    """The body of `POST jobs` (a schedule's adds its cron fields); options given as None are left
    to the scheduler's defaults (the default profile, the first environment that fits...)."""
    body = {"name": name, "kind": kind, "command": command, "source": str(folder),
            "snapshot": base64.b64encode(snapshot).decode(), "max_retries": max_retries, "nodes": nodes}
    return {**body, **{key: value for key, value in options.items() if value is not None}}
