"""`python -m gpulab.extensions.mlflow`: the MLflow service the hub starts, in one process."""

from __future__ import annotations

import logging
import os

from gpulab.hub_config.services.lifetime import end_with_hub


def main() -> None:
    import uvicorn

    from gpulab.hub_config.services.runner import configure_logging, listen_address, service_settings

    from .app import build_app, prepare
    from .service_settings import MlflowServiceSettings

    settings = MlflowServiceSettings.of(service_settings())
    log = configure_logging("mlflow", settings.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration plugin otherwise
    prepare(settings)
    app = build_app(settings)
    host, port = listen_address()
    # hub.service_host set: the proxy runs elsewhere (its own pod) and reaches this port directly
    bind = os.environ.get("GPULAB_SERVICE_BIND")
    log.info("MLflow for the hub at %s (one process)", settings.static_prefix + "/")
    config = uvicorn.Config(
        app, host=host, port=port, workers=1, log_config=None,
        access_log=settings.log_level == "DEBUG",
        proxy_headers=True, forwarded_allow_ips="*" if bind else "127.0.0.1",
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn raises the SIGINT it has shut down on (the hub's stop) again
        log.info("Stopped")


if __name__ == "__main__":
    end_with_hub()
    main()
