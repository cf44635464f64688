"""A private folder per account for Jupyter's runtime files and kernels' sockets.

Kernels talk ZeroMQ. Over TCP (Jupyter's default) they listen on loopback ports that every
local account can find in /proc/net/tcp and connect to: the message key signs messages but does
not hide them, so anyone on the machine could subscribe to another user's kernel output.
gpulab's servers and runs therefore use ZeroMQ's `ipc` transport, Unix sockets in this folder,
which only its account can enter. It lives under /run/gpulab (root's, so nobody can take a
user's folder name first) and its paths stay short: Unix socket paths end at 108 bytes, which a
kernel socket under a home's ~/.local/share/jupyter/runtime can pass.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

RUNTIME_ROOT = Path("/run/gpulab")
RUNTIME_VARIABLE = "JUPYTER_RUNTIME_DIR"
KERNEL_TRANSPORT_ARGS = ["--KernelManager.transport=ipc"]  # a server's
TRANSPORT_VARIABLE = "GPULAB_KERNEL_TRANSPORT"  # a scheduled run's runner: "ipc" in RUNTIME_VARIABLE


def private_kernel_environment(folder: Path) -> dict[str, str]:
    """What a run's runner needs to start its kernel on sockets in `folder`."""
    return {RUNTIME_VARIABLE: str(folder), TRANSPORT_VARIABLE: "ipc"}


def kernel_manager_config(environ) -> dict:
    """The runner's KernelManager settings: ipc sockets named after the run in the private
    folder, when the executor asked for them ({} keeps Jupyter's TCP default, e.g. in a pod)."""
    if environ.get(TRANSPORT_VARIABLE) != "ipc" or not environ.get(RUNTIME_VARIABLE):
        return {}
    return {"KernelManager": {"transport": "ipc", "ip": str(Path(environ[RUNTIME_VARIABLE]) / f"run-{os.getpid()}")}}


def runtime_dir_of(uid: int, root: Path = RUNTIME_ROOT) -> Path:
    return root / str(uid)


def ensure_runtime_dir(uid: int, gid: int, root: Path = RUNTIME_ROOT) -> Path:
    """The account's runtime folder, mode 0700 and its own (as root)."""
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise PermissionError(f"{root} must be a folder only root can write to")
    folder = runtime_dir_of(uid, root)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            folder.unlink()
            folder.mkdir(mode=0o700)
    os.chown(folder, uid, gid, follow_symlinks=False)
    os.chmod(folder, 0o700, follow_symlinks=False)
    return folder
