"""Notebooks in a user's home and project folders, for the Schedules page, read with that user's
own rights: where gpulab runs as root (in the scheduler's root helper, launcher.py) a short
process of the user's account lists or reads it, and the file system decides (project gates and
ACLs included); otherwise every home is the service's own.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from gpulab.hub_config.services.errors import Invalid, NotFound

from gpulab.spawner.backends.local.runner_process import owner_home

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from .service_settings import SchedulerServiceSettings

MAX_NOTEBOOKS = 500
MAX_NOTEBOOK_BYTES = 32 << 20

# Notebooks up to three folders down, not in hidden folders; links are followed only into
# ~/projects/<name> (how project folders appear in a home).
LIST = r"""
import json, os, sys
home, found, limit = os.path.expanduser("~"), [], int(sys.argv[1])
def walk(top, depth):
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or len(found) >= limit:
            continue
        relative = os.path.relpath(entry.path, home)
        try:
            if entry.name.endswith(".ipynb") and entry.is_file():
                found.append(relative)
            elif depth and entry.is_dir() and (not entry.is_symlink() or relative.startswith("projects/")):
                walk(entry.path, depth - 1)
        except OSError:
            continue
walk(home, 3)
print(json.dumps(found))
"""
READ = r"""
import os, sys
with open(os.path.join(os.path.expanduser("~"), sys.argv[1]), "rb") as notebook:
    sys.stdout.buffer.write(notebook.read(int(sys.argv[2]) + 1))
"""


def checked_path(path: str) -> str:
    """A notebook path relative to the home: no absolute paths, no '..', a .ipynb file."""
    parts = PurePosixPath(path).parts
    if not path or len(path) > 1024 or "\0" in path or path.startswith("/") or ".." in parts:
        raise Invalid("path: a notebook's path relative to your home, e.g. projects/vision/train.ipynb")
    if not path.endswith(".ipynb"):
        raise Invalid("path: not a notebook (.ipynb)")
    return path


class UserFiles:
    def __init__(self, settings: SchedulerServiceSettings):
        local = settings.spawner.local
        self.prefix, self.home_root = local.account_prefix, local.home_root
        self.data_dir = settings.hub.data_dir

    def notebooks(self, owner: str) -> list[str]:
        done = self._as_owner(owner, LIST, str(MAX_NOTEBOOKS))
        return json.loads(done.stdout) if done and done.returncode == 0 else []

    def read(self, owner: str, path: str) -> dict:
        done = self._as_owner(owner, READ, checked_path(path), str(MAX_NOTEBOOK_BYTES))
        if done is None or done.returncode != 0:
            raise NotFound(f"cannot read {path} in your home (no such notebook, or not yours to read)")
        if len(done.stdout) > MAX_NOTEBOOK_BYTES:
            raise Invalid(f"{path} is over {MAX_NOTEBOOK_BYTES >> 20} MiB")
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise Invalid(f"{path} is not a notebook (not JSON)") from None

    def _as_owner(self, owner: str, code: str, *args: str) -> subprocess.CompletedProcess | None:
        """Run `code` as the owner's account in their home (None: they have no account yet)."""
        home, account = owner_home(owner, self.prefix, self.home_root, self.data_dir)  # where runs start
        become = []
        if account is not None:
            try:
                entry = pwd.getpwnam(account)
            except KeyError:
                return None
            become = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]
        command = [*become, sys.executable, "-I", "-c", code, *args]
        return subprocess.run(command, capture_output=True, timeout=60, cwd="/",
                              env={"HOME": str(home), "PATH": os.defpath, "LANG": "C.UTF-8"})
