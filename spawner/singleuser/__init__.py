"""What every user server loads: one Jupyter server extension that loads each feature's part.

The spawner enables it with `--ServerApp.jpserver_extensions`, so any Python environment
with gpulab installed gets it, whatever its Jupyter configuration says. A feature adds its
module to `PARTS`; each module has `load(serverapp)`, which reads what it needs from the
environment the spawner set and must not fail the server if its feature is switched off.
"""

from __future__ import annotations

import importlib

PARTS: list[str] = [
    "gpulab.extensions.ssh.endpoint",
    "gpulab.extensions.tensorboard.extension",
    "gpulab.spawner.singleuser.static_cache",
    "gpulab.spawner.singleuser.language_servers",
]


def _jupyter_server_extension_points():
    return [{"module": "gpulab.spawner.singleuser"}]


def _link_jupyter_server_extension(serverapp) -> None:
    # Extensions link in name order, before JupyterLab's link reads its labextensions path.
    from . import lab_ready

    try:
        lab_ready.link(serverapp)
    except Exception:  # JupyterLab's own start, launcher and all, is what the user gets without it
        serverapp.log.exception("gpulab: could not add the @gpulab/lab-ready Lab extension")


# JupyterLab asks its server on every page load whether extensions need a rebuild, which costs
# the server 0.5-0.7 s of CPU while the page is loading (jupyterlab.commands.build_check) and can
# only end in a "Build" prompt: gpulab's environments carry their extensions prebuilt, and a user
# cannot rebuild a shared environment. A labconfig/page_config.json in the environment still wins.
NO_BUILD_CHECK = {"buildCheck": False, "buildAvailable": False}


def _load_jupyter_server_extension(serverapp) -> None:
    page_config = serverapp.web_app.settings.setdefault("page_config_data", {})
    for key, value in NO_BUILD_CHECK.items():
        page_config.setdefault(key, value)
    for name in PARTS:
        try:
            importlib.import_module(name).load(serverapp)
        except Exception:  # one broken part must not take the user's server down
            serverapp.log.exception("gpulab: could not load %s", name)
