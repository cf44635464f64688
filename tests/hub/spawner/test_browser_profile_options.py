"""A profile's options in the spawn page, in a real browser (issue 20): a listed choice and a
choice of one's own reach the server's user_options as KubeSpawner names them; a choice the
profile's rule refuses is a 400 page naming the rule.

On the local backend options carry no overrides (KubeSpawner's need spawner.backend kubernetes):
they are checked and kept in user_options; what they change in a pod is covered by tests/k8s/.
"""

from __future__ import annotations

import pytest

from tests.support.sessions import browser_sign_in, signed_in_user


pytestmark = pytest.mark.browser

PROFILES = [
    {"id": "cpu", "display_name": "CPU", "default": True},
    {"id": "custom", "display_name": "Custom image", "profile_options": {"image": {
        "display_name": "Image",
        "choices": {"base": {"display_name": "Base", "default": True},
                    "scipy": {"display_name": "SciPy"}},
        "unlisted_choice": {"enabled": True, "display_name": "Other image", "validation_regex": "^jupyter/",
                            "validation_message": "images come from jupyter/"}}}},
]


def open_spawn_page(page, hub, user: str) -> None:
    page.goto(hub.url + f"hub/spawn/{user}")
    page.wait_for_selector("input[name=profile]")
    page.check("input[name=profile][value=custom]")


def test_profile_options_in_the_spawn_page(hub_factory, browser, tmp_path):
    hub = hub_factory.start({"profiles": PROFILES, "auth": {"admin_users": ["opt-admin"]}})
    signed_in_user(hub, "optician", "opt-admin")
    page = browser.new_page()
    page.set_default_timeout(60_000)
    browser_sign_in(page, hub, "optician")
    page.wait_for_url("**/hub/**")

    open_spawn_page(page, hub, "optician")
    options = page.locator("[data-profile-options=custom]")
    assert options.locator("select").all_inner_texts() == ["Base\nSciPy"]
    page.select_option("select[name='profile-option-custom--image']", "scipy")
    page.screenshot(path=str(tmp_path / "profile-options.png"), full_page=True)
    page.click("#spawn_form button[type=submit]")
    page.wait_for_url("**/user/optician/lab**")
    assert {k: v for k, v in hub.server_model("optician")["user_options"].items() if k != "environment"} == {
        "profile": "custom", "image": "scipy"}
    hub.stop_server("optician")

    open_spawn_page(page, hub, "optician")
    page.fill("input[name='profile-option-custom--image--unlisted-choice']", "evil/miner")
    page.click("#spawn_form button[type=submit]")
    page.wait_for_selector("text=images come from jupyter/")
    page.screenshot(path=str(tmp_path / "profile-option-refused.png"), full_page=True)
    assert "'evil/miner' is refused for option 'image' of profile 'custom'" in page.content()
    assert hub.server_model("optician") is None  # nothing started, nothing left pending

    open_spawn_page(page, hub, "optician")
    page.fill("input[name='profile-option-custom--image--unlisted-choice']", "jupyter/r-notebook:2024")
    page.click("#spawn_form button[type=submit]")
    page.wait_for_url("**/user/optician/lab**")
    assert hub.server_model("optician")["user_options"]["image--unlisted-choice"] == "jupyter/r-notebook:2024"
    page.close()
