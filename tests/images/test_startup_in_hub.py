"""The user images' start-up contract with a real hub: the local backend spawns servers through
the images' entrypoint and default command (gpulab-start, gpulab-singleuser, as c.Spawner.cmd),
under the user's own account, with the environment the hub sets.

What this does not cover: the container (tini, the image's own files, a pod's environment);
tests/images/test_containers.py runs the built images where a Docker engine is reachable.
"""

from __future__ import annotations

import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import requests

from gpulab.hub_config.client import ClientError
from gpulab.images.catalog import default_catalog_path
from gpulab.spawner.accounts import account_name

pytestmark = pytest.mark.root

BASE = default_catalog_path().parent / "base"
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture
def image_files():
    """The scripts, a start hook and a home default, where every account can read them."""
    folder = Path(tempfile.mkdtemp(prefix="gpulab-image-", dir="/tmp"))
    for name in ("gpulab-start", "gpulab-singleuser"):
        shutil.copy(BASE / name, folder / name)
    hooks = folder / "start.d"
    hooks.mkdir()
    (hooks / "10-record.sh").write_text('id -u > "$HOME/started-as"\nexport GPULAB_TEST_HOOK=ran\n')
    defaults = folder / "home-defaults"
    defaults.mkdir()
    (defaults / "WELCOME.md").write_text("from the image\n")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def prepare(hub_factory, image_files: Path, environment: dict):
    settings = {"spawner": {"environment": {
        "GPULAB_PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "GPULAB_START_D": str(image_files / "start.d"),
        "GPULAB_HOME_DEFAULTS": str(image_files / "home-defaults"),
        **environment,
    }}}
    hub = hub_factory.prepare(settings)
    command = [str(image_files / "gpulab-start"), str(image_files / "gpulab-singleuser")]
    (hub.workdir / "jupyterhub_config.d" / "50-image-entrypoint.py").write_text(f"c.Spawner.cmd = {command!r}\n")
    return hub.start()


def server_process(account: str) -> psutil.Process:
    for process in psutil.process_iter(["username", "cmdline"]):
        if process.info["username"] == account and any("jupyterhub-singleuser" in part
                                                       for part in process.info["cmdline"] or []):
            return process
    raise AssertionError(f"no jupyterhub-singleuser process of {account}")


def test_the_hub_starts_a_server_through_the_images_entrypoint(hub_factory, image_files, account_prefix, homes_root):
    hub = prepare(hub_factory, image_files, {"GPULAB_LD_LIBRARY_PATH": "/usr/local/nvidia/lib64",
                                             "LD_LIBRARY_PATH": "/opt/site/lib"})
    hub.create_user("alice")
    hub.spawn("alice")
    token = hub.user_token("alice")
    status = requests.get(f"{hub.url}user/alice/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    assert status.status_code == 200

    account = account_name("alice", account_prefix)
    home = homes_root / account
    assert (home / "started-as").read_text().strip() == str(pwd.getpwnam(account).pw_uid)
    assert (home / "WELCOME.md").read_text() == "from the image\n"
    env = server_process(account).environ()
    assert env["GPULAB_TEST_HOOK"] == "ran"
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64:/opt/site/lib"
    assert env["PATH"].startswith(f"{VENV_BIN}:/usr/bin:/bin")
    assert env["JUPYTERHUB_USER"] == "alice" and env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/alice/"
    # the hub's arguments reach jupyterhub-singleuser through both scripts
    assert "--ServerApp.jpserver_extensions=gpulab.spawner.singleuser=True" in server_process(account).cmdline()


def test_a_driver_too_old_for_the_image_fails_the_spawn_with_both_versions(hub_factory, image_files, account_prefix):
    version_file = image_files / "nvidia-version"
    version_file.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 2023\n")
    version_file.chmod(0o644)
    hub = prepare(hub_factory, image_files, {"NVIDIA_VISIBLE_DEVICES": "GPU-0f4c", "GPULAB_CUDA": "12.6",
                                             "GPULAB_MIN_DRIVER": "560.28.03",
                                             "GPULAB_DRIVER_VERSION_FILE": str(version_file)})
    hub.create_user("bob")
    message = "this image needs NVIDIA driver 560.28.03 or newer (CUDA 12.6); this machine has 535.104.05"
    with pytest.raises(ClientError) as failed:  # the spawn request itself fails, with the reason
        hub.spawn("bob")
    assert message in failed.value.message
    log = hub.data_dir / "logs" / "servers" / f"{account_name('bob', account_prefix)}.log"
    assert message in log.read_text()
    assert hub.server_model("bob") is None
