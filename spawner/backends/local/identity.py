"""Becoming a server's identity: its cgroups, then its account (or, unisolated, its home).

One step, used by both ways a local server starts: the cold path runs it between fork and
exec (Popen's preexec_fn), the warm path (warm_start.py) in the forked child of the zygote
before the server's code runs. Only root may join a cgroup, so that comes first; then
JupyterHub's own setuid step (initgroups-style supplementary groups, setgid, setuid, chdir to
the account's home), which refuses to go on with a group it could not drop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from jupyterhub.spawner import set_user_setuid

from gpulab.compute.limits import join


def become_step(account: str | None, home: str, cgroups: list[Path]) -> Callable[[], None]:
    """A step that moves the calling process into `cgroups` and then becomes `account` (as root);
    with no account (gpulab not running as root) it only changes into `home`."""
    enter_cgroups = join(cgroups)
    if account:
        become_user = set_user_setuid(account)
    else:
        def become_user():
            os.chdir(home)

    def step():
        enter_cgroups()
        become_user()

    return step
