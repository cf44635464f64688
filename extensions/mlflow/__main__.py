"""`python -m gpulab.extensions.mlflow`: the MLflow service the hub starts, in one process."""

from __future__ import annotations

import logging
import os
import threading
import time
from urllib.parse import urlparse

from gpulab.extensions.service.lifetime import end_with_hub


def build_in_background(app, settings: dict, log) -> None:
    """MLflow's application, handed to `app` when built (warmup.py says why in a thread); a
    failure ends the process, and the hub starts the service again."""
    from .app import build_app

    started = time.monotonic()
    try:
        app.ready(build_app(settings))
    except BaseException:
        log.exception("MLflow could not be built")
        os._exit(1)
    log.info("MLflow is ready (built in %.1f s)", time.monotonic() - started)


def main() -> None:
    import uvicorn

    from gpulab.extensions.service.runner import configure_logging, service_settings

    from .app import prepare
    from .warmup import WarmingUp

    settings = service_settings()
    log = configure_logging("mlflow", settings["log_level"])
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration plugin otherwise
    prepare(settings)
    app = WarmingUp(settings["static_prefix"])
    threading.Thread(target=build_in_background, args=(app, settings, log), name="build-mlflow", daemon=True).start()
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    # hub.service_host set: the proxy runs elsewhere (its own pod) and reaches this port directly
    bind = os.environ.get("GPULAB_SERVICE_BIND")
    log.info("MLflow for the hub at %s (one process)", settings["static_prefix"] + "/")
    config = uvicorn.Config(
        app, host=bind or url.hostname, port=url.port, workers=1, log_config=None,
        access_log=settings["log_level"] == "DEBUG",
        proxy_headers=True, forwarded_allow_ips="*" if bind else "127.0.0.1",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    end_with_hub()
    main()
