"""The "MLflow" item in the JupyterLab launcher: opens the hub's MLflow service in a new tab.

The UI lives at /services/mlflow/, outside the user's server, so the item's path is relative
to the server's base URL (e.g. "../../services/mlflow/" from /user/alice/).
"""

from __future__ import annotations

import os
from pathlib import Path

from gpulab.spawner.singleuser.launcher import launcher_only, relative_path

ICON = Path(__file__).parent / "icons" / "mlflow.svg"


def launcher_entry(environ=os.environ) -> dict:
    url = environ.get("GPULAB_MLFLOW_URL", "")
    path = relative_path(url or "/", environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"))
    return launcher_only("mlflow", "MLflow", ICON, path, enabled=bool(url))
