"""`python -m gpulab.extensions.mlflow`: the MLflow service the hub starts, in one process."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse


def main() -> None:
    import uvicorn

    from gpulab.extensions.service.runner import configure_logging, service_settings

    from .app import build_app, prepare

    settings = service_settings()
    log = configure_logging("mlflow", settings["log_level"])
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration plugin otherwise
    prepare(settings)
    app = build_app(settings)
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    log.info("MLflow for the hub at %s (one process)", settings["static_prefix"] + "/")
    config = uvicorn.Config(
        app, host=url.hostname, port=url.port, workers=1, log_config=None,
        access_log=settings["log_level"] == "DEBUG",
        proxy_headers=True, forwarded_allow_ips="127.0.0.1",  # the hub's proxy runs on this machine
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
