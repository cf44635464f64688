"""Which NVIDIA driver runs which CUDA version (NVIDIA's published tables, Linux x86_64).

Two rules from NVIDIA's CUDA compatibility documentation:
- a CUDA toolkit release runs on at least the driver it shipped with (TOOLKIT_DRIVER);
- within a major version, minor version compatibility lets a newer CUDA 12.x or 13.x
  runtime run on an older driver of the same family (>= 525 for 12.x, >= 580 for 13.x),
  without features that need the newer driver (PTX JIT of newer code among them).
gpulab follows the catalog's `min_driver` for each environment; these tables check that
the catalog is consistent and give a default when it is silent.
"""

from __future__ import annotations

# CUDA release -> oldest Linux x86_64 driver it shipped with ("GA" rows of the release notes).
TOOLKIT_DRIVER = {
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
    "13.1": "590.44.01",
}

# CUDA major -> oldest driver family that runs any of its minor releases.
MINOR_COMPATIBILITY_DRIVER = {"12": "525.60.13", "13": "580.65.06"}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def driver_supports(driver: str, required: str) -> bool:
    return version_tuple(driver) >= version_tuple(required)


def minimum_driver(cuda: str) -> str | None:
    """The driver NVIDIA lists for a CUDA release, or the family minimum for an unlisted minor."""
    if cuda in TOOLKIT_DRIVER:
        return TOOLKIT_DRIVER[cuda]
    return MINOR_COMPATIBILITY_DRIVER.get(cuda.split(".")[0])


def incompatibility(cuda: str | None, min_driver: str | None, driver: str | None) -> str | None:
    """Why an environment built for `cuda` cannot run on `driver`, or None if it can."""
    if cuda is None:
        return None
    required = min_driver or minimum_driver(cuda)
    if required is None:
        return f"CUDA {cuda} is newer than gpulab knows; no minimum driver is known"
    if driver is None:
        return "no NVIDIA driver on this machine"
    if not driver_supports(driver, required):
        return f"CUDA {cuda} needs NVIDIA driver {required} or newer; this machine has {driver}"
    return None
