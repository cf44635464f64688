"""TensorBoard in a user's server (loaded through gpulab.spawner.singleuser.PARTS)."""

from __future__ import annotations

import atexit
from pathlib import Path

from tornado.ioloop import PeriodicCallback

from .config import ServerSettings
from .handlers import make_handlers
from .instances import TensorBoards

MAX_CHECK_INTERVAL_SECONDS = 60


def load(serverapp) -> None:
    settings = ServerSettings.from_environment()
    if not settings.enabled:
        return
    idle = float(settings.idle_timeout_seconds)
    boards = TensorBoards(serverapp.base_url, idle_timeout=idle, max_instances=int(settings.max_instances))
    root = Path(serverapp.root_dir).expanduser()
    serverapp.web_app.add_handlers(".*", make_handlers(serverapp.base_url, boards, settings.default_logdir, root))
    checks = PeriodicCallback(boards.stop_idle, 1000 * min(MAX_CHECK_INTERVAL_SECONDS, max(1.0, idle / 4)))
    checks.start()
    atexit.register(boards.terminate_now)
    serverapp.log.info("gpulab: TensorBoard at %stensorboard/ (idle instances stop after %ss)", serverapp.base_url, idle)
