"""What the TensorBoard page shows and how TensorBoard's pages are fixed up on their way
through the proxy: pure functions, no I/O apart from the bounded folder scan."""

from __future__ import annotations

import os
import re
from pathlib import Path

EVENT_FILE = re.compile(r"^events\.out\.tfevents\.")
# TensorBoard's index.html inlines its font CSS with root-absolute URLs (url(/font-roboto/...)),
# which --path_prefix does not rewrite: behind the hub they would point outside the server.
ROOT_FONT_URL = re.compile(rb"url\(/font-roboto/")


def human_duration(seconds: float) -> str:
    """30 minutes, 1 hour, 1 hour 30 minutes, 45 seconds."""
    seconds = int(round(seconds))
    if seconds < 60:
        return _plural(seconds, "second")
    hours, minutes = divmod(seconds // 60, 60)
    parts = [_plural(hours, "hour")] if hours else []
    if minutes or not hours:
        parts.append(_plural(minutes, "minute"))
    return " ".join(parts)


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" + ("" if count == 1 else "s")


def prefix_font_urls(body: bytes, prefix: str) -> bytes:
    """TensorBoard's page with its font URLs under `prefix` (the instance's proxied path)."""
    return ROOT_FONT_URL.sub(b"url(" + prefix.rstrip("/").encode() + b"/font-roboto/", body)


def find_log_folders(root: Path, max_depth: int = 4, limit: int = 50, max_visits: int = 5000) -> list[Path]:
    """Folders under `root` that hold TensorBoard event files, nearest first, for the picker.
    Hidden folders are skipped and the walk is bounded, so a huge home stays quick."""
    found: list[Path] = []
    visits = 0
    for folder, subfolders, files in os.walk(root):
        visits += 1
        depth = len(Path(folder).relative_to(root).parts)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if depth < max_depth else []
        if any(EVENT_FILE.match(name) for name in files):
            found.append(Path(folder))
        if len(found) >= limit or visits >= max_visits:
            break
    return sorted(found, key=lambda p: (len(p.parts), str(p)))
