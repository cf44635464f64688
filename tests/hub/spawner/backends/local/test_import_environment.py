"""A real zygote of this environment names what its imports read from the environment, and the
hub decides from it which spawns it may fork (import_environment.py). No hub: the zygote is
started as the hub starts it, by warm_start.Zygote, and asked nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from gpulab.spawner.backends.local.import_environment import DERIVED_AGAIN, cold_reason
from gpulab.spawner.backends.local.warm_start import ENTRY_POINT, Zygote, language_kept

# A spawn's environment as the local spawner makes it (less its secrets)
SPAWN = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": "/home/gpulab-alice",
         "USER": "gpulab-alice", "SHELL": "/bin/bash", "LANG": "C.UTF-8", "JUPYTERHUB_USER": "alice",
         "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api", "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
         "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice", "JUPYTERHUB_SERVER_NAME": "",
         "JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH": "0", "JUPYTER_RUNTIME_DIR": "/run/gpulab/1000",
         "CUDA_VISIBLE_DEVICES": "", "GPULAB_PROFILE": "cpu", "MLFLOW_TRACKING_URI": "http://127.0.0.1:8081/services/mlflow"}


# the hub's language, kept by JupyterHub's default Spawner.env_keep
HUB = {"LANG": "C.UTF-8", "LANGUAGE": "en_US:en", "PATH": "/usr/bin:/bin"}
ENV_KEEP = ["PATH", "PYTHONPATH", "CONDA_ROOT", "CONDA_DEFAULT_ENV", "VIRTUAL_ENV", "LANG", "LC_ALL",
            "JUPYTERHUB_SINGLEUSER_APP"]


@pytest.fixture(scope="module")
def zygote():
    zygote = Zygote(sys.executable, str(Path(sys.executable).parent / ENTRY_POINT),
                    ("gpulab.spawner.singleuser", "gpulab.extensions.scheduler.lab"), language=language_kept(HUB, ENV_KEEP))
    asyncio.run(zygote.ensure_started())
    yield zygote
    zygote.close()


def test_the_zygote_names_what_its_imports_read_and_every_derivation_is_of_a_variable_read(zygote):
    modules = {module for _, module in zygote.read_at_import}
    assert {"jupyterhub.services.auth", "jupyter_client.session", "jupyterlab.extensions.pypi"} <= modules
    # a derivation of a variable no import reads any more would hide nothing: the table is current
    assert set(DERIVED_AGAIN) <= zygote.read_at_import, set(DERIVED_AGAIN) - zygote.read_at_import


def test_a_spawn_as_the_hub_makes_it_is_forked_and_one_with_a_proxy_starts_cold(zygote):
    # the hub's LANG reaches every spawn (env_keep), its LANGUAGE none: nor does the zygote get it
    assert zygote.environment["LANG"] == "C.UTF-8" and "LANGUAGE" not in zygote.environment
    spawn = SPAWN
    assert cold_reason(spawn, zygote.environment, zygote.read_at_import) is None
    assert "LANG is unset" in cold_reason({k: v for k, v in spawn.items() if k != "LANG"}, zygote.environment,
                                          zygote.read_at_import)
    reason = cold_reason({**spawn, "https_proxy": "http://proxy.example:3128"}, zygote.environment,
                         zygote.read_at_import)
    assert reason == "https_proxy is set here, unlike when jupyterlab.extensions.pypi was imported"
    assert "LANG" in cold_reason({**spawn, "LANG": "xx_XX.UTF-8"}, zygote.environment, zygote.read_at_import)
