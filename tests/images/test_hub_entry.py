"""The hub image's command (images/hub/gpulab-hub), run outside a container: it starts gpulab
from the settings file at GPULAB_CONFIG with its state in GPULAB_DATA_DIR, as the chart mounts
them, and refuses clearly when either is missing. What this does not cover: the container
(tini, UID 1000, /etc/gpulab and /srv/gpulab); tests/images/test_containers.py does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gpulab.images.catalog import default_catalog_path
from tests.support.hub import wait_for

HUB_COMMAND = default_catalog_path().parent / "hub" / "gpulab-hub"
PATH = f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"  # as the image has it (useradd is in sbin)


def test_the_hub_command_runs_gpulab_with_the_mounted_settings(hub_factory, tmp_path):
    hub = hub_factory.prepare({"hub": {"log_level": "INFO"}})
    state = hub.workdir / "srv"  # short: the root helpers' sockets live in it (107 bytes at most)
    hub.log_path = tmp_path / "hub.log"
    with open(hub.log_path, "wb") as log:
        hub.process = subprocess.Popen(
            ["bash", str(HUB_COMMAND)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PATH": PATH, "GPULAB_CONFIG": str(hub.settings_file), "GPULAB_DATA_DIR": str(state)},
        )
    wait_for(hub._answers, 90, f"the hub started by {HUB_COMMAND.name} (log: {hub.log_path})")
    assert (state / "jupyterhub.sqlite").exists() and (state / "state" / "gpulab.sqlite").exists()
    assert not (hub.workdir / ".gpulab").exists()  # the data folder came from GPULAB_DATA_DIR
    assert hub.stop() == 0


def test_a_missing_settings_file_is_named(tmp_path):
    missing = tmp_path / "etc" / "gpulab.yaml"
    result = subprocess.run(["bash", str(HUB_COMMAND)], capture_output=True, text=True, timeout=30,
                            env={"PATH": PATH, "GPULAB_CONFIG": str(missing), "GPULAB_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert f"no settings file at {missing}" in result.stderr


def test_invalid_settings_exit_2_before_anything_starts(tmp_path):
    settings = tmp_path / "gpulab.yaml"
    settings.write_text("hub:\n  port: eighty\n")
    result = subprocess.run(["bash", str(HUB_COMMAND)], capture_output=True, text=True, timeout=60,
                            env={"PATH": PATH, "GPULAB_CONFIG": str(settings), "GPULAB_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 2
    assert 'hub.port: got "eighty"' in result.stderr
