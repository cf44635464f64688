"""JupyterHub configuration for gpulab: load and validate gpulab.yaml, apply it, then the escape hatch."""

import os

from gpulab.hub_config.services.config import pass_hub_environment
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.datadir import prepare_data_dir
from gpulab.hub_config.hand_set import merge_hand_set_environment, owned_settings_set_by_hand
from gpulab.hub_config.hub_sqlite import tune as tune_hub_sqlite
from gpulab.hub_config.launch import config_d_files, settings_from_environment
from gpulab.hub_config.settings import ConfigError, Problem

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (traitlets provides it when it runs this file)
settings = settings_from_environment()
prepare_data_dir(settings.settings)
apply_config(settings.settings, c)
pass_hub_environment(c, os.environ, os.getpid())  # this file runs in the hub's process
if settings.settings.scheduler.enabled:
    from gpulab.db import database_url
    from gpulab.extensions.scheduler.metrics import register_run_metrics

    register_run_metrics(database_url(settings.settings))
for extra in config_d_files(settings.config_dir):
    load_subconfig(str(extra))  # type: ignore[name-defined]  # noqa: F821 (as get_config)
merge_hand_set_environment(c)
tune_hub_sqlite(c.JupyterHub.db_url)  # WAL for the hub's own SQLite file (hub_sqlite.py says why)
refused = owned_settings_set_by_hand(c)
if refused:
    raise ConfigError("jupyterhub_config.d", [Problem(f"c.{setting}", f"set by hand, but gpulab builds it: {instead}")
                                              for setting, instead in refused])
