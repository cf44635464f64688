"""KubeSpawner settings set by hand in jupyterhub_config.d that gpulab owns: refused at start-up
with gpulab's equivalent named, or (environment) honoured; never silently ignored (issue 20, item 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from gpulab.hub_config.hand_set import merge_hand_set_environment, owned_settings_set_by_hand
from gpulab.hub_config.launch import hub_config_file


def test_owned_settings_are_named_with_what_to_do_instead():
    c = Config()
    c.KubeSpawner.profile_list = [{"display_name": "Small"}]
    c.KubeSpawner.image = "jupyter/scipy-notebook"
    c.KubeSpawner.cpu_limit = 2.0  # not owned: a profile merges into it
    refused = dict(owned_settings_set_by_hand(c))
    assert set(refused) == {"KubeSpawner.profile_list", "KubeSpawner.image"}
    assert "`profiles`" in refused["KubeSpawner.profile_list"] and "gpulab migrate z2jh" in refused["KubeSpawner.profile_list"]
    assert "kubespawner_override" in refused["KubeSpawner.image"]
    assert owned_settings_set_by_hand(Config()) == []


def test_a_hand_set_environment_adds_to_gpulab_s():
    c = Config()
    c.Spawner.environment = {"GPULAB_URL": "http://hub/", "MLFLOW_TRACKING_URI": "http://mlflow/"}
    c.GpulabKubeSpawner.literal_environment = ["GPULAB_URL", "MLFLOW_TRACKING_URI"]
    c.KubeSpawner.environment = {"SCRATCH": "/scratch/{username}", "MLFLOW_TRACKING_URI": "http://mine/"}
    merge_hand_set_environment(c)
    assert "environment" not in c.KubeSpawner
    assert c.Spawner.environment == {"GPULAB_URL": "http://hub/", "MLFLOW_TRACKING_URI": "http://mine/",
                                     "SCRATCH": "/scratch/{username}"}
    assert c.GpulabKubeSpawner.literal_environment == ["GPULAB_URL"]  # the admin's value is theirs: expanded


def load_hub_config(folder: Path) -> subprocess.CompletedProcess:
    """Run the hub's jupyterhub_config.py as traitlets does, with `folder`'s gpulab.yaml and config.d.

    As root it runs as nobody: as root the file also makes gpulab's service accounts."""
    load = f"from traitlets.config.loader import PyFileConfigLoader; PyFileConfigLoader({str(hub_config_file())!r}).load_config()"
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    return subprocess.run(as_nobody + [sys.executable, "-c", load], capture_output=True, text=True, timeout=120,
                          env={"GPULAB_CONFIG": str(folder / "gpulab.yaml"), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def config_folder():
    folder = Path(tempfile.mkdtemp(prefix="gpulab-hand-set-", dir="/tmp"))
    folder.chmod(0o777)
    (folder / "gpulab.yaml").write_text(yaml.safe_dump({"hub": {"data_dir": str(folder / "data")}}))
    (folder / "jupyterhub_config.d").mkdir(mode=0o755)
    folder.joinpath("gpulab.yaml").chmod(0o644)
    yield folder
    shutil.rmtree(folder)


def test_the_hub_s_config_refuses_a_hand_set_profile_list(config_folder):
    extra = config_folder / "jupyterhub_config.d" / "10-z2jh.py"
    extra.write_text("c.KubeSpawner.profile_list = [{'display_name': 'Small', 'kubespawner_override': {'cpu_limit': 2}}]\n")
    extra.chmod(0o644)
    result = load_hub_config(config_folder)
    assert result.returncode != 0
    assert ("jupyterhub_config.d: c.KubeSpawner.profile_list: set by hand, but gpulab builds it: set `profiles` "
            "in gpulab.yaml") in result.stderr
    extra.write_text("c.KubeSpawner.cpu_limit = 2.0\n")
    result = load_hub_config(config_folder)
    assert result.returncode == 0, result.stderr
