"""Sampling and reporting pieces without a hub: NVML's reader against a stand-in `pynvml` module
(no real GPU exists here: the module below answers the calls NvmlInventory makes, one GPU whole
and one in MIG mode), readings for MIG instances, the metrics exposition parsed with
prometheus_client's parser, the core's visibility rules and the CLI's table."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from traitlets.config import Config

from gpulab.compute.usage import Reading, UsageInterval
from gpulab.compute.usage_sampler import HeldDevice
from gpulab.hub_config.services.errors import Invalid
from gpulab.extensions.usage.cli import table
from gpulab.extensions.usage.core import Asker, UsageCore
from gpulab.extensions.usage.metrics import exposition
from gpulab.extensions.usage.service_settings import UsageServiceSettings
from gpulab.hub_config.apply import apply_config
from tests.support.settings import handed_over, typed_settings


def test_metrics_label_each_device_with_its_holder_and_count_allocations():
    held = [HeldDevice("GPU-a", "ann", "server:ann/big", "gpu-1", "", Reading(87, 1024)),
            HeldDevice("MIG-b", "ann", "run:42", "mig", "vision", Reading(None, 512)),
            HeldDevice("GPU-c", "bob", "server:bob/", "gpu-1", "", Reading(0, 0))]
    samples = [s for f in text_string_to_metric_families(exposition(held).decode()) for s in f.samples]
    utilisation = {(s.labels["device"], s.labels["user"], s.labels["server"], s.labels["run"]): s.value
                   for s in samples if s.name == "gpulab_gpu_utilization_percent"}
    assert utilisation == {("GPU-a", "ann", "ann/big", ""): 87, ("GPU-c", "bob", "bob/", ""): 0}  # MIG: none measured
    memory = {s.labels["device"]: (s.value, s.labels["project"]) for s in samples if s.name == "gpulab_gpu_memory_used_bytes"}
    assert memory["MIG-b"] == (512 * 2**20, "vision")
    assert {s.labels["user"]: s.value for s in samples if s.name == "gpulab_gpus_allocated"} == {"ann": 2, "bob": 1}


class Sessions:
    """Hands the core a session whose query answers the given intervals."""

    def __init__(self, rows):
        self.rows = rows

    def __call__(self):
        rows = self.rows

        class Session:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def scalars(self, query):
                return list(rows)

            def expunge(self, row):
                pass

        return Session()


def interval(owner: str, hours: float) -> UsageInterval:
    start = datetime(2026, 11, 3, 8, tzinfo=timezone.utc)
    end = start.replace(hour=8 + int(hours))
    return UsageInterval(owner=owner, purpose=f"server:{owner}/", profile="gpu-1", project="", gpus=1, cpus=4.0,
                         started_at=start, ended_at=end, measured_gpu_seconds=3600.0 * hours,
                         idle_gpu_seconds=1800.0 * hours)


def test_the_core_shows_admins_everyone_and_users_themselves_and_refuses_bad_input():
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)
    core = UsageCore(Sessions([interval("ann", 2), interval("bob", 4)]), 10, lambda: [], clock=lambda: now)
    everyone = core.report(Asker("root", True), "2026-11-01", None, "user")
    assert [(r["key"], r["gpu_hours"], r["idle_share"], r["cpu_hours"]) for r in everyone["rows"]] == [
        ("bob", 4.0, 0.5, 16.0), ("ann", 2.0, 0.5, 8.0)]
    assert [r["key"] for r in core.report(Asker("ann", False), None, None, "user")["rows"]] == ["ann"]
    with pytest.raises(Invalid, match="by='team' is not one of"):
        core.report(Asker("ann", False), None, None, "team")
    text = table(everyone)
    assert text.splitlines()[0].startswith("2026-11-01 to 2026-11-26 00:00 UTC, by user")
    assert text.splitlines()[2].split() == ["bob", "4.00", "50%", "16.00", "4.00", "0.00"]


def test_the_usage_service_runs_as_the_account_that_owns_the_database_and_asks_the_hub_for_nothing():
    values = typed_settings(hub={"data_dir": "/srv/gpulab/data"}, spawner={"local": {"account_prefix": "lab-"}})
    c = apply_config(values, Config())
    [usage] = [s for s in c.JupyterHub.services if s["name"] == "usage"]
    [scheduler] = [s for s in c.JupyterHub.services if s["name"] == "scheduler"]
    account = json.loads(usage["environment"]["GPULAB_SERVICE_ACCOUNT"])
    assert account == {"name": "lab_svc-scheduler", "owns": ["/srv/gpulab/data/state"]}
    assert account["name"] == json.loads(scheduler["environment"]["GPULAB_SERVICE_ACCOUNT"])["name"]
    assert not [r for r in c.JupyterHub.load_roles if "usage" in r.get("services", [])]  # no hub scopes
    settings = json.loads(usage["environment"]["GPULAB_SERVICE_SETTINGS"])
    assert settings["gpu_inventory"] and settings["sample_interval"] == 10 and settings["retention_days"] == 400

    kubernetes = typed_settings(spawner={"backend": "kubernetes"}, database={"url": "postgresql://db/gpulab"})
    [usage] = [s for s in apply_config(kubernetes, Config()).JupyterHub.services if s["name"] == "usage"]
    assert "GPULAB_SERVICE_ACCOUNT" not in usage["environment"]
    assert json.loads(usage["environment"]["GPULAB_SERVICE_SETTINGS"])["gpu_inventory"] == ""  # nothing sampled


def test_the_home_pages_gpu_table_names_each_holder_for_a_person():
    from gpulab.extensions.usage.core import holder_label

    assert holder_label("server:ann/") == "default server"
    assert holder_label("server:ann/big") == "server big"
    assert holder_label("run:0b9c") == "run 0b9c"


def test_the_asker_maintains_the_projects_whose_maintainer_group_they_are_in():
    from gpulab.extensions.usage.core import asker_of

    asker = asker_of({"name": "lead", "admin": False,
                      "groups": ["project:vision:maintainer", "project:nlp:editor", "ml-team"]})
    assert (asker.name, asker.admin, asker.led_projects) == ("lead", False, frozenset({"vision"}))
    assert asker.scope == "lead and project vision"
    assert asker_of({"name": "root", "admin": True}).scope == "everyone"


@pytest.mark.parametrize("backend", ["local", "kubernetes"])
def test_the_service_reads_back_the_settings_the_hub_sent(backend):
    s = typed_settings(hub={"data_dir": "/srv/gpulab/data"}, spawner={"backend": backend},
                       usage={"sample_interval": 5, "dcgm_exporter_url": "http://dcgm:9400/metrics"})
    sent = handed_over(apply_config(s, Config()), "usage")
    read = UsageServiceSettings.of(sent)
    assert read.as_dict() == sent
    assert read.sample_interval == 5 and read.backend == backend and read.idle_threshold == 10
    assert read.gpu_inventory == ("" if backend == "kubernetes" else s.spawner.local.gpu_inventory)
