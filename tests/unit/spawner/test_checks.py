"""Cross-checks of the profiles and environments settings, each naming its key."""

from __future__ import annotations

from pathlib import Path

from gpulab.hub_config.settings import complete
from gpulab.hub_config.typed_settings import Settings
from gpulab.spawner.checks import check_settings


def test_cross_checks_name_the_key():
    values = complete({"profiles": [
        {"id": "a", "display_name": "A", "default": True, "gpu": {"count": 0, "models": ["A100"]}},
        {"id": "a", "display_name": "B", "default": True, "cpu": {"guarantee": 4, "limit": 2}},
        {"id": "c", "display_name": "C", "gpu": {"count": 2, "mig_profile": "1g.10gb"}, "environments": ["nope"]},
    ], "environments": {"offer": ["cpu"], "default": "gpu-thing"}}, Path("/"))
    found = {(p.path, p.message.split(" (")[0]) for p in check_settings(Settings.from_values(values))}
    assert ("profiles[0].gpu.models", "models need gpu.count of at least 1") in found
    assert ("profiles[1].id", "'a' is already the id of profiles[0]") in found
    assert ("profiles[1].default", "only one profile can be the default; profiles[0] is") in found
    assert ("profiles[1].cpu.guarantee", "4 is more than the limit 2") in found
    assert ("profiles[2].gpu.count", "a MIG profile takes exactly one slice: set gpu.count to 1") in found
    assert ("profiles[2].environments", "'nope' is not in the catalog") in found
    assert ("environments.default", "'gpu-thing' is not offered") in found
