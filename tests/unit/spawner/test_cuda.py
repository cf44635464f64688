"""The CUDA toolkit to driver table and the compatibility verdict."""

from __future__ import annotations

from gpulab.spawner.cuda import TOOLKIT_DRIVER, incompatibility, minimum_driver


def test_cuda_driver_table_and_compatibility():
    assert minimum_driver("13.0") == "580.65.06" and minimum_driver("12.7") == "525.60.13"
    assert incompatibility("12.8", "570.26", "570.86.15") is None
    assert incompatibility("13.0", "580.65.06", "570.86.15") == (
        "CUDA 13.0 needs NVIDIA driver 580.65.06 or newer; this machine has 570.86.15")
    assert incompatibility("12.4", None, None) == "no NVIDIA driver on this machine"
    assert incompatibility(None, None, None) is None
    assert all(v.count(".") >= 1 for v in TOOLKIT_DRIVER.values())
