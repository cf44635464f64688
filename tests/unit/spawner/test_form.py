"""The spawn form's profile cards."""

from __future__ import annotations

from gpulab.compute.availability import profile_availability
from tests.support.gpu_profiles import A100, CPU, GPU1, GPU2, gpus, profiles


def test_spawn_form_says_each_reason_once():
    """Issue 15 item 4: "no matching GPUs on this machine" was printed twice on a disabled card."""
    from gpulab.spawner.form import profile_cards, render_form

    cpu, gpu1, gpu2 = profiles(CPU, GPU1, GPU2)
    devices = gpus(2)
    availability = {p.id: profile_availability(p, devices if p is not gpu1 else [], {"GPU-0000"}) for p in (cpu, gpu1, gpu2)}
    html = render_form(profile_cards([cpu, gpu1, gpu2], availability, {}, {}))
    assert html.count("no matching GPUs on this machine") == 1
    assert html.count(f"1 of 2 {A100} free") == 1  # gpu-2 is full: said once, in its reason
    assert f"Unavailable: full: 1 of 2 {A100} free" in html
