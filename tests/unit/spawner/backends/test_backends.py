"""Every compute backend implements one protocol, from one folder, and is the one gpulab.yaml names."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
from jupyterhub.spawner import Spawner
from traitlets.config import Config

from gpulab.hub_config.settings import bundled_schema
from gpulab.spawner.backends import BACKENDS, backend
from gpulab.spawner.backends.protocol import ComputeBackend
from tests.support.settings import typed_settings

BACKENDS_FOLDER = Path(importlib.import_module("gpulab.spawner.backends").__file__).parent


def test_the_schema_offers_exactly_the_registered_backends():
    assert set(bundled_schema()["properties"]["spawner"]["properties"]["backend"]["enum"]) == set(BACKENDS)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_a_backend_is_one_folder_implementing_the_protocol(name):
    chosen = backend(name)
    assert chosen.name == name
    # its own folder: the package declaring it, and its spawner class, live in spawner/backends/<name>/
    assert Path(inspect.getfile(type(chosen))).parent == BACKENDS_FOLDER / name
    module_name, class_name = chosen.spawner_class.rsplit(".", 1)
    spawner_class = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(spawner_class, Spawner)
    assert Path(inspect.getfile(spawner_class)).parent == BACKENDS_FOLDER / name
    for member in [m for m in dir(ComputeBackend) if not m.startswith("_")] + list(ComputeBackend.__annotations__):
        assert hasattr(chosen, member), f"{name} lacks {member}"
        protocol_member = getattr(ComputeBackend, member, None)
        if callable(protocol_member):
            assert inspect.signature(getattr(type(chosen), member)).parameters.keys() == \
                inspect.signature(protocol_member).parameters.keys()


def test_an_unknown_backend_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown compute backend 'slurm'; known: local, docker, kubernetes"):
        backend("slurm")


@pytest.mark.parametrize("name, own_section", [("local", "LocalSpawner"), ("docker", "ContainerSpawner"),
                                               ("kubernetes", "KubeSpawner")])
def test_a_backend_configures_only_its_own_spawner(name, own_section):
    c = Config()
    backend(name).configure(typed_settings({"spawner": {"backend": name}}), c)
    assert own_section in c
    others = {"LocalSpawner", "ContainerSpawner", "KubeSpawner"} - {own_section}
    if name == "docker":  # its servers' accounts and homes are the local backend's
        others.discard("LocalSpawner")
    assert not others & set(c.keys())
