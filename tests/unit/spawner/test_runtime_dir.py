"""The private runtime folder kernels' ipc sockets live in (spawner/runtime_dir.py)."""

from __future__ import annotations

import os
import stat

import pytest

from gpulab.spawner.runtime_dir import ensure_runtime_dir, kernel_manager_config, private_kernel_environment

pytestmark = pytest.mark.root


def test_the_folder_is_the_accounts_alone_and_a_planted_link_is_replaced(tmp_path):
    root = tmp_path / "run-gpulab"
    folder = ensure_runtime_dir(65534, 65534, root)
    info = os.lstat(folder)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (65534, 0o700)
    folder.rmdir()
    folder.symlink_to(tmp_path)  # only root could do this here; still never followed
    assert not ensure_runtime_dir(65534, 65534, root).is_symlink()
    root.chmod(0o777)
    with pytest.raises(PermissionError):
        ensure_runtime_dir(65534, 65534, root)


def test_runners_use_ipc_only_when_the_executor_asks(tmp_path):
    assert kernel_manager_config({}) == {}
    config = kernel_manager_config(private_kernel_environment(tmp_path))
    assert config["KernelManager"]["transport"] == "ipc"
    assert config["KernelManager"]["ip"].startswith(str(tmp_path) + "/run-")
