"""The user images' start-up scripts, run with bash outside a container, in a temp dir, with the
environment a hub sets. What this does not cover: tini, and the image's real /proc and /dev
(the driver version file and GPU device nodes are given by path); the container tests do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gpulab.images.catalog import default_catalog_path

BASE = default_catalog_path().parent / "base"
START = BASE / "gpulab-start"
SINGLEUSER = BASE / "gpulab-singleuser"
ENV = "/usr/bin/env"
IS_ROOT = os.geteuid() == 0
HUB_ENV = {  # what JupyterHub's spawner sets for a server (values made up)
    "JUPYTERHUB_API_TOKEN": "secret-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
    "JUPYTERHUB_USER": "alice",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
}


def driver_file(tmp_path: Path, version: str, open_module: bool = False) -> Path:
    """What /proc/driver/nvidia/version says (both kernel module flavours)."""
    kind = "Open Kernel Module for x86_64" if open_module else "x86_64 Kernel Module"
    path = tmp_path / "nvidia-version"
    path.write_text(f"NVRM version: NVIDIA UNIX {kind}  {version}  Release Build  (dvs-builder@U16)  Tue Jul 1 2025\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    return path


def start(tmp_path: Path, command: list[str], env: dict | None = None, script: Path = START) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "GPULAB_ALLOW_ROOT": "1",
            "GPULAB_START_D": str(tmp_path / "no-hooks"), "GPULAB_HOME_DEFAULTS": str(tmp_path / "no-defaults")}
    return subprocess.run(["bash", str(script), *command], env={**base, **(env or {})}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


def environment_of(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


# ---------------------------------------------------------------- environment


def test_the_images_paths_come_first_and_the_hubs_entries_stay(tmp_path):
    result = start(tmp_path, [ENV], {
        "GPULAB_PATH": "/opt/gpulab/env/bin:/usr/local/nvidia/bin:/usr/bin:/bin",
        "PATH": "/srv/hub/venv/bin:/usr/bin:/bin",
        "GPULAB_LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
        "LD_LIBRARY_PATH": "/opt/site/lib",
    })
    env = environment_of(result)
    assert env["PATH"] == "/opt/gpulab/env/bin:/usr/local/nvidia/bin:/usr/bin:/bin:/srv/hub/venv/bin"
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib:/usr/local/nvidia/lib64:/opt/site/lib"


def test_empty_entries_are_dropped_so_the_working_directory_never_joins_the_library_path(tmp_path):
    env = environment_of(start(tmp_path, [ENV], {"GPULAB_LD_LIBRARY_PATH": "/usr/local/nvidia/lib64",
                                                 "LD_LIBRARY_PATH": "::/opt/site/lib:"}))
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64:/opt/site/lib"
    assert "LD_LIBRARY_PATH" not in environment_of(start(tmp_path, [ENV], {"GPULAB_LD_LIBRARY_PATH": ""}))


def test_the_hubs_variables_reach_the_server_unchanged(tmp_path):
    env = environment_of(start(tmp_path, [ENV], HUB_ENV))
    assert {k: env[k] for k in HUB_ENV} == HUB_ENV


def test_arguments_reach_the_command_as_they_are(tmp_path):
    result = start(tmp_path, ["printf", "[%s]", "two words", "--ServerApp.x=1", ""])
    assert result.stdout == "[two words][--ServerApp.x=1][]"


# ---------------------------------------------------------------- driver check


@pytest.mark.parametrize("driver, starts", [("535.104.05", False), ("560.28.02", False), ("560.28.03", True),
                                            ("560.35.03", True), ("580.95.05", True)])
def test_the_driver_must_be_at_least_the_images_minimum(tmp_path, driver, starts):
    marker = tmp_path / "started"
    result = start(tmp_path, ["touch", str(marker)], {
        "PATH": "/usr/bin:/bin", "GPULAB_MIN_DRIVER": "560.28.03", "GPULAB_CUDA": "12.6",
        "NVIDIA_VISIBLE_DEVICES": "GPU-5e3c1b7a", "GPULAB_DRIVER_VERSION_FILE": str(driver_file(tmp_path, driver)),
    })
    assert marker.exists() == starts
    if not starts:
        assert result.returncode == 1
        assert f"needs NVIDIA driver 560.28.03 or newer (CUDA 12.6); this machine has {driver}" in result.stderr


def test_the_open_kernel_modules_version_line_is_read_too(tmp_path):
    result = start(tmp_path, ["true"], {"GPULAB_MIN_DRIVER": "580.65.06", "NVIDIA_VISIBLE_DEVICES": "all",
                                        "GPULAB_DRIVER_VERSION_FILE": str(driver_file(tmp_path, "575.57.08", True))})
    assert result.returncode == 1 and "this machine has 575.57.08" in result.stderr


@pytest.mark.parametrize("env", [
    {"NVIDIA_VISIBLE_DEVICES": "void"},  # a CPU profile: gpulab hides the GPUs
    {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DISABLE_REQUIRE": "1"},  # NVIDIA's own override
    {"NVIDIA_VISIBLE_DEVICES": "all", "GPULAB_MIN_DRIVER": ""},  # a CPU image
], ids=["no-gpus", "disabled", "cpu-image"])
def test_the_driver_is_not_checked_without_gpus_or_when_switched_off(tmp_path, env):
    settings = {"GPULAB_MIN_DRIVER": "999.0", "GPULAB_DRIVER_VERSION_FILE": str(driver_file(tmp_path, "535.1"))}
    assert start(tmp_path, ["true"], {**settings, **env}).returncode == 0


def test_an_unreadable_driver_version_is_reported_but_does_not_block(tmp_path):
    result = start(tmp_path, ["true"], {"GPULAB_MIN_DRIVER": "560.28.03", "NVIDIA_VISIBLE_DEVICES": "all",
                                        "GPULAB_DRIVER_VERSION_FILE": str(tmp_path / "missing")})
    assert result.returncode == 0 and "no NVIDIA driver version is readable" in result.stderr


# ---------------------------------------------------------------- home and hooks


def test_home_files_hidden_by_a_volume_are_restored_without_overwriting(tmp_path):
    defaults = tmp_path / "defaults"
    (defaults / ".jupyter").mkdir(parents=True)
    (defaults / ".jupyter" / "lab.json").write_text("{}")
    (defaults / ".bashrc").write_text("image's bashrc\n")
    (defaults / "README.txt").write_text("welcome\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("the user's own bashrc\n")
    result = start(tmp_path, ["true"], {"GPULAB_HOME_DEFAULTS": str(defaults)})
    assert result.returncode == 0, result.stderr
    assert (home / ".bashrc").read_text() == "the user's own bashrc\n"
    assert (home / ".jupyter" / "lab.json").read_text() == "{}"
    assert (home / "README.txt").read_text() == "welcome\n"


def test_a_missing_home_is_created(tmp_path):
    assert start(tmp_path, ["true"], {"HOME": str(tmp_path / "new" / "home")}).returncode == 0
    assert (tmp_path / "new" / "home").is_dir()


def test_hooks_run_in_name_order_and_can_set_the_servers_environment(tmp_path):
    hooks = tmp_path / "start.d"
    hooks.mkdir()
    log = tmp_path / "order"
    (hooks / "20-second.sh").write_text(f'echo second >> "{log}"\nexport FROM_HOOK="$FROM_HOOK+20"\n')
    (hooks / "10-first.sh").write_text(f'echo first >> "{log}"\nexport FROM_HOOK=10\n')
    (hooks / "30-not-a-hook.txt").write_text("exit 1\n")
    env = environment_of(start(tmp_path, [ENV], {"GPULAB_START_D": str(hooks)}))
    assert log.read_text() == "first\nsecond\n"
    assert env["FROM_HOOK"] == "10+20"


def test_a_failing_hook_stops_the_start_and_says_which(tmp_path):
    hooks = tmp_path / "start.d"
    hooks.mkdir()
    (hooks / "10-mount.sh").write_text("false\n")
    marker = tmp_path / "started"
    result = start(tmp_path, ["touch", str(marker)], {"GPULAB_START_D": str(hooks)})
    assert result.returncode == 1 and not marker.exists()
    assert f"{hooks / '10-mount.sh'} failed; not starting" in result.stderr


# ---------------------------------------------------------------- default command


@pytest.fixture
def doubles(tmp_path):
    """Test doubles for jupyterhub-singleuser and jupyter that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("jupyterhub-singleuser", "jupyter"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*"\necho "token=$JUPYTERHUB_API_TOKEN"\n')
        (bin_dir / name).chmod(0o755)
    shutil.copy(SINGLEUSER, bin_dir / "gpulab-singleuser")
    return bin_dir


def test_started_by_a_hub_the_default_command_is_jupyterhub_singleuser(tmp_path, doubles):
    """No arguments: gpulab-start runs gpulab-singleuser, which runs the hub's server with its args."""
    result = start(tmp_path, [], {**HUB_ENV, "GPULAB_PATH": f"{doubles}:/usr/bin:/bin"})
    assert result.stdout.splitlines() == ["jupyterhub-singleuser ", "token=secret-token"]
    result = subprocess.run([str(doubles / "gpulab-singleuser"), "--ServerApp.jpserver_extensions=x=True"],
                            env={**HUB_ENV, "PATH": f"{doubles}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.stdout.splitlines()[0] == "jupyterhub-singleuser --ServerApp.jpserver_extensions=x=True"


def test_on_its_own_the_default_command_is_jupyterlab_on_port_8888(tmp_path, doubles):
    result = subprocess.run([str(doubles / "gpulab-singleuser")], env={"PATH": f"{doubles}:/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.stdout.splitlines()[0] == "jupyter lab --ServerApp.ip=0.0.0.0 --ServerApp.port=8888 --no-browser"
    assert "not started by a hub" in result.stderr


# ---------------------------------------------------------------- never root


@pytest.fixture
def open_dir():
    """A folder every user can read: the script runs again as another user from there."""
    folder = Path(tempfile.mkdtemp(prefix="gpulab-start-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.root
def test_started_as_root_it_continues_as_the_images_user(open_dir):
    script = open_dir / "gpulab-start"
    shutil.copy(START, script)
    result = subprocess.run(["bash", str(script), "sh", "-c", 'echo "$(id -u):$(id -g) $HOME"'],
                            env={"PATH": "/usr/bin:/bin", "GPULAB_UID": "65534", "GPULAB_GID": "65534",
                                 "GPULAB_START_D": str(open_dir / "none"), "HOME": "/root"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    home = subprocess.run(["getent", "passwd", "65534"], capture_output=True, text=True).stdout.split(":")[5]
    assert result.stdout.strip() == f"65534:65534 {home}"
    assert "started as root; continuing as uid 65534" in result.stderr


@pytest.mark.root
def test_an_unwritable_home_is_reported_and_the_server_still_starts(open_dir):
    """As root any folder is writable; as nobody, a root-owned home is not."""
    script = open_dir / "gpulab-start"
    shutil.copy(START, script)
    home = open_dir / "home"
    home.mkdir(mode=0o755)
    result = subprocess.run(["bash", str(script), "true"],
                            env={"PATH": "/usr/bin:/bin", "GPULAB_UID": "4242", "GPULAB_GID": "4242",
                                 "HOME": str(home), "GPULAB_START_D": str(open_dir / "none")},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"the home folder {home} is not writable by uid 4242" in result.stderr


@pytest.mark.skipif(IS_ROOT, reason="runs as root here; the root tests cover dropping privileges")
def test_not_root_nothing_changes_user(tmp_path):
    result = start(tmp_path, ["id", "-u"], {"GPULAB_ALLOW_ROOT": ""})
    assert result.stdout.strip() == str(os.geteuid())
