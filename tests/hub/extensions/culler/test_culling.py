"""Idle culling end to end: the culler service stops idle servers by profile, and spares busy GPUs.

GPU utilisation comes from the declared inventory (tests/support/declared_gpus.py), which
reads it from a file the test writes; NVML's own readings are not covered here.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.support.gpu_hub import prepare_gpu_hub
from tests.support.hub import wait_for


PROFILES = [
    {"id": "forever", "display_name": "CPU, never culled", "default": True},
    {"id": "short", "display_name": "CPU, culled fast", "idle_timeout": 2},
    {"id": "gpu-short", "display_name": "GPU, culled fast", "gpu": {"count": 1}, "idle_timeout": 2},
]


@pytest.fixture
def hub(hub_factory, hubs_root):
    # The culler runs as its own account: the declared inventory and its readings must be
    # readable by it (pytest's tmp_path is private to root).
    folder = Path(tempfile.mkdtemp(prefix="gpus-", dir=hubs_root))
    folder.chmod(0o755)
    utilization = folder / "utilization.json"
    utilization.write_text(json.dumps({"GPU-00000000-test": 95}))
    hub = prepare_gpu_hub(hub_factory, folder, gpus=1, migs=0, name="culling", profiles=PROFILES,
                          extra={"culling": {"check_interval": 1, "gpu_utilization_threshold": 10}},
                          utilization_file=utilization)
    hub.utilization = utilization
    return hub.start()


def test_idle_servers_are_culled_by_profile_and_busy_gpus_keep_theirs(hub):
    for name, profile in (("idler", "short"), ("keeper", "forever"), ("trainer", "gpu-short")):
        hub.create_user(name)
        hub.spawn(name, options={"profile": profile})

    wait_for(lambda: hub.server_model("idler") is None, 60, "the idle CPU server to be culled")
    assert "culling idler (profile short): idle for" in hub.log_tail(2000)

    wait_for(lambda: "keeping trainer (profile gpu-short): GPU busy (95% > 10%)" in hub.log_tail(2000), 60,
             "the culler to spare the busy GPU server")
    assert hub.server_model("trainer")["ready"]

    hub.utilization.write_text(json.dumps({"GPU-00000000-test": 3}))
    wait_for(lambda: hub.server_model("trainer") is None, 60, "the GPU server to be culled once its GPU is quiet")
    assert "culling trainer (profile gpu-short): idle for" in hub.log_tail(2000)
    assert hub.server_model("keeper")["ready"]
    hub.stop_server("keeper")
