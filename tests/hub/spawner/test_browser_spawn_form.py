"""The spawn page in a real browser: live GPU availability, a full profile disabled with its reason.

GPUs are declared (tests/support/declared_gpus.py); see test_gpu_profiles.py for what that leaves out.
"""

from __future__ import annotations

import pytest

from tests.support.gpu_hub import make_user, start_gpu_hub
from tests.support.sessions import browser_sign_in, signed_in_user


pytestmark = pytest.mark.browser


def test_spawn_page_shows_availability_and_disables_a_full_profile(hub_factory, browser, tmp_path):
    hub = start_gpu_hub(hub_factory, tmp_path, gpus=2, migs=1)
    signed_in_user(hub, "browsing", "gpu-admin")  # a local account with a password
    make_user(hub, "holder")
    hub.spawn("holder", options={"profile": "gpu-2"})  # both whole GPUs are now taken

    page = browser.new_page()
    page.set_default_timeout(60_000)
    browser_sign_in(page, hub, "browsing")
    page.wait_for_selector("input[name=profile]")
    page.screenshot(path=str(tmp_path / "spawn-form.png"), full_page=True)

    gpu2 = page.locator("label[data-profile=gpu-2]")
    assert page.is_disabled("input[name=profile][value=gpu-2]")
    assert "Unavailable: full: 0 of 2 NVIDIA A100-SXM4-80GB free" in gpu2.inner_text()
    assert "1 of 1 MIG 1g.10gb slices free" in page.locator("label[data-profile=mig]").inner_text()
    assert page.is_enabled("input[name=profile][value=mig]")

    # Picking the MIG profile offers its GPU environments only, and the spawn goes through.
    page.check("input[name=profile][value=mig]")
    visible = page.locator("#environment option:not([hidden])").all_inner_texts()
    assert visible and all("CUDA" in text for text in visible)
    page.click("#spawn_form button[type=submit]")
    page.wait_for_url("**/user/browsing/lab**")
    assert hub.server_model("browsing")["user_options"] == {"profile": "mig", "environment": "torch12"}
    page.close()
