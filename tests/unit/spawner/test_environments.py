"""Environments offered with each profile, on this driver and this machine."""

from __future__ import annotations

import pytest

from gpulab.compute.profiles import ChoiceError
from gpulab.hub_config.typed_settings import Environments
from gpulab.images.catalog import Environment
from gpulab.spawner.environments import EnvironmentOption, offered, options_for, resolve_environment
from tests.support.gpu_profiles import CPU, DRIVER, GPU1, profiles


def env(id_, gpu, cuda=None, min_driver=None, local_python=""):
    return Environment(id=id_, display_name=id_, description="", image=f"r/{id_}:t", gpu=gpu, python="3.12",
                       approx_size_gb=1, local_python=local_python, cuda=cuda, min_driver=min_driver)


def test_environments_fit_profiles_and_the_driver():
    cpu, gpu1 = profiles(CPU, GPU1)
    catalog = [env("cpu", False), env("torch12", True, "12.8", "570.26", "/envs/torch12"),
               env("torch13", True, "13.0", "580.65.06", "/envs/torch13")]
    assert [o.id for o in options_for(cpu, catalog, DRIVER)] == ["cpu"]
    options = options_for(gpu1, catalog, DRIVER, python_exists=lambda path: path == "/envs/torch12")
    assert options[0] == EnvironmentOption(catalog[1], None)
    assert "needs NVIDIA driver 580.65.06" in options[1].unavailable
    missing = options_for(gpu1, catalog, "590.1", python_exists=lambda path: False)
    assert "is not installed on this machine (environments.local_python.torch12)" in missing[0].unavailable
    assert resolve_environment(gpu1, options, None).id == "torch12"
    with pytest.raises(ChoiceError, match="cannot run: CUDA 13.0 needs"):
        resolve_environment(gpu1, options, "torch13")
    with pytest.raises(ChoiceError, match="'cpu' is not offered with profile 'gpu-1'"):
        resolve_environment(gpu1, options, "cpu")
    with pytest.raises(ChoiceError, match="has no usable environment"):
        resolve_environment(gpu1, options_for(gpu1, catalog, None), None)


def test_offered_follows_settings_order_and_overrides():
    catalog = [env("a", False), env("b", True, "12.8")]
    chosen = offered(catalog, Environments(offer=("b",), local_python={"b": "/opt/b"}))
    assert [(e.id, e.local_python) for e in chosen] == [("b", "/opt/b")]
