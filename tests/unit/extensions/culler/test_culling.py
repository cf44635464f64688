"""Idle-culling decisions with a replaceable clock; where the culler reads GPUs from, and its account."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

from traitlets.config import Config

from gpulab.extensions.culler.decisions import GpuHistory, ServerView, decide
from gpulab.extensions.culler.service import Culler
from gpulab.extensions.culler.service_settings import CullerSettings
from gpulab.hub_config.apply import apply_config
from tests.support.settings import handed_over, typed_settings

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def history(*samples: tuple[float, dict]) -> GpuHistory:
    h = GpuHistory(keep=timedelta(hours=2))
    for minutes, readings in samples:
        h.record(at(minutes), readings)
    return h


CPU = ServerView("ada", "", "cpu", last_activity=at(0))
GPU = ServerView("bo", "train", "gpu-1", last_activity=at(0), devices=("GPU-1",))


def test_no_timeout_never_culls():
    assert decide(CPU, 0, at(10_000), False, history(), 10).cull is False


def test_a_cpu_server_is_culled_after_its_own_timeout():
    assert decide(CPU, 3600, at(59), False, history(), 10) .reason == "active 59m00s ago (timeout 1h00m)"
    verdict = decide(CPU, 3600, at(61), False, history(), 10)
    assert verdict.cull and verdict.reason == "idle for 1h01m, kernels idle"


def test_a_busy_kernel_keeps_a_server():
    assert decide(CPU, 60, at(120), True, history(), 10).reason == "a kernel is busy"


def test_a_gpu_server_needs_quiet_gpus_over_the_whole_window():
    quiet = [(m, {"GPU-1": 3}) for m in range(0, 70, 5)]
    busy_once = quiet[:-3] + [(55, {"GPU-1": 80})] + quiet[-2:]
    assert decide(GPU, 3600, at(65), False, history(*quiet), 10).cull
    assert decide(GPU, 3600, at(65), False, history(*busy_once), 10).reason == "GPU busy (80% > 10%)"
    # samples from before the window do not count
    old_busy = [(0, {"GPU-1": 99})] + [(m, {"GPU-1": 0}) for m in range(10, 130, 10)]
    assert decide(GPU, 3600, at(125), False, history(*old_busy), 10).cull


def test_without_history_for_the_whole_window_a_gpu_server_is_kept():
    recent = [(m, {"GPU-1": 0}) for m in range(30, 70, 5)]  # the culler started at minute 30
    assert decide(GPU, 3600, at(65), False, history(*recent), 10).reason == (
        "GPU utilisation not observed over the whole window yet")


def test_devices_that_report_no_utilisation_fall_back_to_kernel_activity():
    other = [(m, {"GPU-9": 50}) for m in range(0, 70, 5)]  # e.g. MIG slices report nothing
    verdict = decide(GPU, 3600, at(65), False, history(*other), 10)
    assert verdict.cull and verdict.reason.endswith("GPU utilisation unknown")


def test_an_open_tab_keeps_no_gpu_server_whose_code_and_gpus_stayed_quiet():
    """A JupyterLab tab left open polls the server, so the hub's last_activity stays fresh; for a
    server holding GPUs, what ran in it (kernels, terminals) and the GPUs decide."""
    polled_gpu = ServerView("bo", "train", "gpu-1", last_activity=at(64), devices=("GPU-1",))
    quiet = history(*[(m, {"GPU-1": 0}) for m in range(0, 70, 5)])
    verdict = decide(polled_gpu, 3600, at(65), False, quiet, 10, code_activity=at(2))
    assert verdict.cull and verdict.reason == "idle for 1h03m, kernels idle, GPUs at most 0%"
    assert decide(polled_gpu, 3600, at(65), False, quiet, 10, code_activity=at(30)).reason == \
        "active 1m00s ago (timeout 1h00m)"  # a cell ran 35 minutes ago
    assert decide(polled_gpu, 3600, at(65), True, quiet, 10, code_activity=at(2)).reason == "a kernel is busy"
    warm = history(*[(m, {"GPU-1": 0 if m < 60 else 60}) for m in range(0, 70, 5)])
    assert decide(polled_gpu, 3600, at(65), False, warm, 10, code_activity=at(2)).reason == "GPU busy (60% > 10%)"
    polled_cpu = ServerView("ada", "", "cpu", last_activity=at(64))  # no GPUs held: the hub's activity decides
    assert not decide(polled_cpu, 3600, at(65), False, quiet, 10, code_activity=at(2)).cull


# ---------------------------------------------------------------- the service's account and inputs


class UsersPage:
    """The hub's GET hub/api/users answer for one page (what the culler reads)."""

    def __init__(self, users: list[dict]):
        self.users = users

    def request(self, method: str, path: str):
        assert method == "GET" and path.startswith("hub/api/users?state=ready")
        return self.users


def test_the_gpus_a_server_holds_come_from_its_server_state_not_the_database():
    users = [{"name": "bo", "servers": {
        "train": {"ready": True, "last_activity": "2026-11-22T12:00:00Z", "user_options": {"profile": "gpu-1"},
                  "state": {"claim_id": "c1", "devices": ["GPU-1", "GPU-2"], "pid": 42}},
        "": {"ready": True, "last_activity": "2026-11-22T12:00:00Z", "user_options": {}, "state": {}}}}]
    culler = Culler(UsersPage(users), None, {"timeouts": {"gpu-1": 60}, "check_interval": 1,
                                             "gpu_utilization_threshold": 10, "gpu_inventory": ""},
                    logging.getLogger("test"))
    servers = {s.name: s for s in culler.ready_servers()}
    assert servers["train"].devices == ("GPU-1", "GPU-2") and servers[""].devices == ()
    assert culler.inventory is None  # no inventory configured (Kubernetes): nothing measured


def test_the_culler_runs_as_its_own_account_with_no_database_and_may_read_server_state():
    values = typed_settings(hub={"data_dir": "/srv/gpulab/data"}, spawner={"local": {"account_prefix": "lab-"}},
                            profiles=[{"id": "cpu", "display_name": "CPU", "idle_timeout": 60}])
    c = apply_config(values, Config())
    service = next(s for s in c.JupyterHub.services if s["name"] == "culler")
    assert json.loads(service["environment"]["GPULAB_SERVICE_ACCOUNT"]) == {"name": "lab_svc-culler", "owns": []}
    settings = json.loads(service["environment"]["GPULAB_SERVICE_SETTINGS"])
    assert "database_url" not in settings
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "culler-service")
    assert "admin:server_state" in role["scopes"] and "admin:users" not in role["scopes"]


def test_the_culler_reads_back_the_settings_the_hub_sent():
    s = typed_settings(hub={"data_dir": "/srv/gpulab/data", "tls": {"cert_file": "/c.crt", "key_file": "/c.key"}},
                       profiles=[{"id": "gpu-1", "display_name": "GPU", "idle_timeout": 600}])
    sent = handed_over(apply_config(s, Config()), "culler")
    read = CullerSettings.of(sent)
    assert read.as_dict() == sent
    assert read.timeouts == {"gpu-1": 600} and read.verify_proxy is False
    assert read.proxy_url == "https://127.0.0.1:8000/" and read.gpu_inventory == s.spawner.local.gpu_inventory
