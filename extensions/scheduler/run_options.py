"""How to run a notebook beyond its parameters (kernel, working directory), carried in the notebook itself.

A schedule stores the notebook as submitted and the runner receives it whole, so the options
Papermill takes next to the notebook (`-k`, `--cwd`) and the notebook's own location travel
in its metadata under one key. The runner takes them out before it executes the notebook,
so the executed notebook's metadata is what Papermill would write. Pure functions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

KEY = "gpulab_run"


@dataclass(frozen=True)
class RunOptions:
    kernel_name: str | None = None  # Papermill's -k; None: the notebook's kernelspec
    cwd: str | None = None  # Papermill's --cwd; relative to the owner's home; None: the notebook's folder
    input_path: str = ""  # where the notebook was submitted from (relative to home, or absolute)


def attach(notebook: dict, options: RunOptions) -> dict:
    """A copy of `notebook` that carries `options` (the key is replaced, never merged)."""
    carried = copy.deepcopy(notebook)
    metadata = carried.setdefault("metadata", {})
    metadata.pop(KEY, None)
    values = {"kernel_name": options.kernel_name, "cwd": options.cwd, "input_path": options.input_path}
    if any(values.values()):
        metadata[KEY] = {key: value for key, value in values.items() if value}
    return carried


def detach(notebook: dict) -> tuple[dict, RunOptions]:
    """(the notebook as the user wrote it, the options it carried)."""
    plain = copy.deepcopy(notebook)
    found = plain.get("metadata", {}).pop(KEY, None)
    if not isinstance(found, dict):
        return plain, RunOptions()
    return plain, RunOptions(kernel_name=_text(found, "kernel_name"), cwd=_text(found, "cwd"),
                             input_path=_text(found, "input_path") or "")


def _text(found: dict, key: str) -> str | None:
    value = found.get(key)
    return value if isinstance(value, str) and value else None


def working_directory(options: RunOptions, home: str) -> tuple[str, bool]:
    """(directory to run in, whether the user asked for it): --cwd, else the notebook's folder, else home.

    Relative paths are taken from the owner's home, as JupyterLab's paths are from its root.
    """
    if options.cwd:
        return str(PurePosixPath(home, options.cwd)), True
    if options.input_path:
        return str(PurePosixPath(home, options.input_path).parent), False
    return home, False


def notebook_location(path: Path, home: str) -> str:
    """`input_path` for a notebook file: relative to the submitter's home when inside it (the same
    home on the hub, wherever it is mounted), else absolute."""
    absolute = path.resolve()
    if home:
        try:
            return str(absolute.relative_to(Path(home).resolve()))
        except ValueError:
            pass
    return str(absolute)
