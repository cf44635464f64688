"""A managed service ends with the hub that started it.

JupyterHub starts each service in a session of its own, so a hub killed outright (or one
that fails half-way through starting) leaves its services running: they hold the ports its
successor's services need and keep serving the old configuration. Linux can tell a process
when its parent dies (PR_SET_PDEATHSIG); elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

HUB_PID_VARIABLE = "GPULAB_HUB_PID"
PR_SET_PDEATHSIG = 1


def end_with_hub(environ=os.environ) -> None:
    """SIGTERM this process when the hub (its parent, named in GPULAB_HUB_PID) dies."""
    hub_pid = environ.get(HUB_PID_VARIABLE)
    if not hub_pid or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not fatal: the service just outlives a crashed hub, as before
    if os.getppid() != int(hub_pid):  # the hub died before the request above
        os.kill(os.getpid(), signal.SIGTERM)
