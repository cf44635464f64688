"""Hubs whose services run as their own accounts, for tests (see extensions/service/service_account.py).

A root hub lets a service's account pass through the folders above the service's folder.
pytest's own temporary root (/tmp/pytest-of-root) is private and pytest takes every group
and other bit (an ACL's mask included) off it whenever a session starts, which would lock a
running service out of its folder. These hubs live under /tmp instead, in a folder anyone
may pass through, as a real install's data directory would (e.g. /var/lib/gpulab).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from gpulab.extensions.service.service_account import remove_service_account, service_account_name

from .hub import HubFactory


@contextmanager
def reachable_hub_factory(defaults: dict, service: str = "mlflow"):
    """A HubFactory under /tmp; afterwards its hubs are stopped and `service`'s account removed."""
    root = Path(tempfile.mkdtemp(prefix="gpulab-test-hubs-", dir="/tmp"))
    root.chmod(0o755)
    factory = HubFactory(root, defaults)
    try:
        yield factory
    finally:
        factory.cleanup()
        remove_service_account(service_account_name(defaults["spawner"]["local"]["account_prefix"], service))
        shutil.rmtree(root, ignore_errors=True)
