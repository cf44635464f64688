"""@gpulab/lab-ready, a JupyterLab extension of gpulab's own: launcher and file browser once the layout is restored.

Profiled with Playwright on the 2-core development machine (benchmarks/lab_ready.py's page, a
chromium trace and the page's timers with their async stacks): JupyterLab's `app.restored`
resolves about 1 s before its launcher appears, and in that second the page is idle: no request
in flight, the main thread asleep. The launcher, and the default file browser (hidden, class
jp-mod-restoring, until JupyterLab's restoreBrowser has run), wait for the router, which waits in
`apputils:load-statedb` for the state database's workspace save: a 500 ms Debouncer that every
change of state during the start restarts; the recent-documents list saves through a 500 ms
Debouncer of its own, so the two run one after the other. The plugin
(labextension/@gpulab/lab-ready/static/remoteEntry.*.js, plain JavaScript, no build) does at
`app.restored` what restoreBrowser does after the route, and opens the launcher into an empty
main area. Measured on a plain server (warm browser cache, load average ~8): URL -> launcher
1.34-1.49 s with it, 2.4-3.0 s without.

The extension ships inside the Python package (setup.py's package_data takes .js and .json), and
`link` puts its folder on JupyterLab's labextensions path for this server. Jupyter links server
extensions in name order, so this runs before JupyterLab reads the path (as the scheduler's
Lab extension does, extensions/scheduler/lab.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

LABEXTENSIONS = Path(__file__).parent / "labextension"  # a labextensions folder: @gpulab/lab-ready/
NAME = "@gpulab/lab-ready"
ENTRY_NAME = re.compile(r"remoteEntry\.([0-9a-f]{20})\.js")


def package() -> dict:
    return json.loads((LABEXTENSIONS / NAME / "package.json").read_text())


def entry_point() -> Path:
    """The container script package.json names (JupyterLab loads it)."""
    return LABEXTENSIONS / NAME / package()["jupyterlab"]["_build"]["load"]


def content_name(text: bytes) -> str:
    """The file name the container script must have: its content's sha256, as served immutable."""
    return f"remoteEntry.{hashlib.sha256(text).hexdigest()[:20]}.js"


def link(serverapp) -> None:
    # extend(): kept with a list or a `.append(...)` in the user's own config alike
    serverapp.config.LabApp.extra_labextensions_path.extend([str(LABEXTENSIONS)])
