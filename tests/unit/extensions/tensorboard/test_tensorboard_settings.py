"""The `tensorboard` section reaches user servers as JSON and is read back there into a frozen
dataclass (no pydantic in servers) that matches the settings model field for field."""

from __future__ import annotations

import dataclasses
import json

from traitlets.config import Config

from gpulab.extensions.tensorboard.config import SETTINGS_VARIABLE, ServerSettings
from gpulab.extensions.tensorboard.launcher import launcher_entry
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.typed_settings import Tensorboard
from tests.support.settings import typed_settings


def test_the_servers_dataclass_has_the_sections_fields_and_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(ServerSettings)}
    section = {name: info.default for name, info in Tensorboard.model_fields.items()}
    assert fields == {**section, "enabled": False}  # no variable: off


def test_a_server_reads_back_what_the_hub_sent():
    s = typed_settings(tensorboard={"default_logdir": "~/runs", "max_instances": 2})
    environment = apply_config(s, Config()).Spawner.environment
    read = ServerSettings.from_environment(environment)
    assert read == ServerSettings(True, "~/runs", 1800, 2)
    assert json.loads(environment[SETTINGS_VARIABLE]) == s.tensorboard.model_dump()
    assert ServerSettings.from_environment({}).enabled is False
    assert launcher_entry(environment)["launcher_entry"]["enabled"] is True
    assert launcher_entry({})["launcher_entry"]["enabled"] is False
