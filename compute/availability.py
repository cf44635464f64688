"""Which devices fit a profile, how many are free, and which to give (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .inventory import Device
from .profiles import GpuRequest, Profile


def fits(request: GpuRequest, device: Device) -> bool:
    """Whether `device` can serve `request` (a MIG slice of the right size, or a whole GPU)."""
    if request.models and not any(m.lower() in device.model.lower() for m in request.models):
        return False
    if request.mig_profile:
        return device.mig_profile == request.mig_profile
    return not device.is_mig


@dataclass(frozen=True)
class Availability:
    free: int
    total: int
    label: str  # e.g. "3 of 8 NVIDIA A100-SXM4-80GB free"
    enough: bool  # whether a server of the profile can get its GPUs now


def _kind(request: GpuRequest, devices: list[Device]) -> str:
    if request.mig_profile:
        return f"MIG {request.mig_profile} slices"
    models = Counter(d.model for d in devices)
    if len(models) == 1:
        return next(iter(models))
    return " or ".join(request.models) + " GPUs" if request.models else "GPUs"


def profile_availability(profile: Profile, devices: list[Device], claimed: set[str]) -> Availability | None:
    """Live availability of a GPU profile; None for CPU profiles."""
    if not profile.uses_gpu:
        return None
    matching = [d for d in devices if fits(profile.gpu, d)]
    free = sum(1 for d in matching if d.uuid not in claimed)
    if not matching:
        label = f"no {_kind(profile.gpu, matching) if profile.gpu.mig_profile else 'matching GPUs'} on this machine"
    else:
        label = f"{free} of {len(matching)} {_kind(profile.gpu, matching)} free"
    return Availability(free, len(matching), label, free >= profile.gpu.count)


def choose_devices(request: GpuRequest, devices: list[Device], claimed: set[str]) -> list[Device] | None:
    """`request.count` free devices that fit, lowest index first; None if there are not enough."""
    free = [d for d in devices if fits(request, d) and d.uuid not in claimed]
    free.sort(key=lambda d: tuple(int(part) for part in d.index.split(":")))
    return free[: request.count] if len(free) >= request.count else None
