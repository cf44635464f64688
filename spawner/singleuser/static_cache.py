"""Lab extensions' content-hashed files served as immutable, so a returning browser asks for none of them.

JupyterLab serves its own bundles (static/lab/*, hashed names) with `Cache-Control: public,
max-age=31536000, immutable`, and means to do the same for the installed lab extensions' static/
folders (jupyterlab_server's LabServerApp.initialize_settings puts them in the server's
`static_immutable_cache`). But it lists them without the server's base URL (`/lab/extensions/...`,
not `/user/NAME/lab/extensions/...`), so behind JupyterHub none matches and every one is sent
`no-cache` (LabApp's cache_files is off). Measured on the 2-core development machine with
Playwright: a returning user's page load revalidates ~45 files of the installed extensions
(scheduler, collaboration, widgets, server proxy, gpulab's own), one round trip each over 6
connections, ~0.25 s of the load.

This puts each file under a lab extension's static/ folder whose name carries a content hash
(webpack's `[name].[contenthash].js`, `remoteEntry.[contenthash].js`) on the list, with the base
URL. Files without one (style.js, third-party-licenses.json, package.json) keep `no-cache`.
Runs before JupyterLab's own load (server extensions load in name order), which keeps the list's
entries; the folders are the linked LabApp's, so the scheduler's and lab_ready.py's are in.
"""

from __future__ import annotations

import re
from pathlib import Path

from jupyter_server.utils import url_path_join

# a run of 16+ hex digits between dots, or starting the name: webpack's content hashes
HASHED = re.compile(r"(?:^|\.)[0-9a-f]{16,}\.")


def hashed_files(folder: Path) -> list[Path]:
    """Content-hashed files in the static/ folders of the extensions in one labextensions folder."""
    found = []
    for static in [*folder.glob("[!@]*/static"), *folder.glob("@*/*/static")]:
        found += [path for path in static.rglob("*") if path.is_file() and HASHED.search(path.name)]
    return sorted(found)


def immutable_urls(base_url: str, labextensions_url: str, folders: list[str]) -> list[str]:
    urls = []
    for folder in folders:
        root = Path(folder)
        urls += [url_path_join(base_url, labextensions_url, path.relative_to(root).as_posix())
                 for path in hashed_files(root)]
    return urls


def lab_apps(serverapp) -> list:
    """The linked JupyterLab-like applications (JupyterLab's is named "lab"; Notebook 7's too)."""
    apps = [getattr(point, "app", None) for point in serverapp.extension_manager.extension_points.values()]
    return [app for app in apps if all(hasattr(app, name) for name in (
        "labextensions_path", "extra_labextensions_path", "labextensions_url"))]


def load(serverapp) -> None:
    for lab in lab_apps(serverapp):
        add(serverapp, lab)


def add(serverapp, lab) -> None:
    folders = [*lab.extra_labextensions_path, *lab.labextensions_path]
    settings = serverapp.web_app.settings
    listed = list(settings.get("static_immutable_cache") or [])
    settings["static_immutable_cache"] = listed + [
        url for url in immutable_urls(serverapp.base_url, lab.labextensions_url, folders) if url not in listed]
