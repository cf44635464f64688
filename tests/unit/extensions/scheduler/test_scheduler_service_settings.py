"""What the hub hands the scheduler service and its launcher, as JSON, reads back into the same
typed settings on the service's side, for every backend."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from traitlets.config import Config

from gpulab.extensions.scheduler.config import service_settings
from gpulab.extensions.scheduler.service_settings import SchedulerServiceSettings
from gpulab.hub_config.services.config import SETTINGS_VARIABLE
from gpulab.hub_config.apply import apply_config
from tests.support.settings import typed_settings


def handed_over(c: Config, name: str) -> dict:
    (spec,) = [spec for spec in c.JupyterHub.services if spec["name"] == name]
    return json.loads(spec["environment"][SETTINGS_VARIABLE])


@pytest.mark.parametrize("backend", ["local", "docker", "kubernetes"])
def test_the_service_reads_back_what_the_hub_sent(backend):
    s = typed_settings(hub={"data_dir": "/srv/gpulab/data"}, spawner={"backend": backend},
                       quotas={"users": {"ann": {"max_gpus": 1}}},
                       profiles=[{"display_name": "1 GPU", "gpu": {"count": 1}, "cpu": {"limit": 4}}])
    sent = handed_over(apply_config(s, Config()), "scheduler")
    read = SchedulerServiceSettings.of(sent)
    assert read == service_settings(s)
    assert read.as_dict() == sent
    assert read.profiles == s.profiles and read.quotas.users["ann"].max_gpus == 1
    assert read.spawner.backend == backend and read.hub.data_dir == "/srv/gpulab/data"
    assert (read.container_engine is not None) == (backend == "docker")
    assert (read.launcher_socket is not None) == (backend != "kubernetes")


def test_the_launcher_gets_the_same_and_its_socket_and_client():
    s = typed_settings(hub={"data_dir": "/srv/gpulab/data"})
    launcher = SchedulerServiceSettings.of(handed_over(apply_config(s, Config()), "scheduler-launcher"))
    assert launcher.socket == launcher.launcher_socket and launcher.client == "gpulab_svc-scheduler"
    assert launcher.model_copy(update={"socket": None, "client": None}) == service_settings(s)


def test_a_key_the_service_does_not_know_is_refused():
    with pytest.raises(ValidationError):
        SchedulerServiceSettings.of({"spawner": {"backend": "local", "docker": {}}})
