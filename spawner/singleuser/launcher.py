"""Launcher-only items in JupyterLab's launcher, through jupyter-server-proxy's entry points.

jupyter-server-proxy turns each `jupyter_serverproxy_servers` entry point into a launcher item
that opens `<server base URL><path_info>`. An entry with no command and no port only adds the
item: the page it opens is served by gpulab (a hub service, or handlers in the user's server).
"""

from __future__ import annotations

import posixpath
import warnings
from pathlib import Path


def relative_path(target: str, server_prefix: str) -> str:
    """`target` (an absolute path on the hub) relative to the user server's base URL."""
    path = posixpath.relpath(target, server_prefix or "/")
    return path + "/" if target.endswith("/") and not path.endswith("/") else path


def launcher_only(name: str, title: str, icon: Path, path_info: str, enabled: bool) -> dict:
    # jupyter-server-proxy warns about entries with no command or port, once per process;
    # a launcher-only entry is what is meant here.
    warnings.filterwarnings("ignore", message=f"Server proxy {name} does not have a command")
    return {
        "launcher_entry": {"enabled": enabled, "title": title, "icon_path": str(icon),
                           "path_info": path_info, "category": "Notebook"},
        "new_browser_tab": True,
    }
