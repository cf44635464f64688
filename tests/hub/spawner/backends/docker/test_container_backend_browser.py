"""The docker backend in a real browser: sign in, pick the CPU environment on the spawn page, and
reach JupyterLab served from a container of the `cpu` image (built from images/ by the
`container_engine` fixture, run by Podman).

What this does not cover: GPU profiles (no GPU here; see test_container_backend.py), and what the
server can do once JupyterLab is up (test_container_backend.py runs a kernel in it).
"""

from __future__ import annotations

import pytest

from gpulab.images.catalog import load_catalog
from gpulab.spawner.accounts import account_name
from tests.support.sessions import browser_sign_in, signed_in_user


pytestmark = [pytest.mark.browser, pytest.mark.root]

CPU_IMAGE = next(e for e in load_catalog(None) if e.id == "cpu").image
PROFILES = [{"id": "small", "display_name": "Small CPU", "default": True, "cpu": {"limit": 1}},
            {"id": "large", "display_name": "Large CPU", "cpu": {"limit": 2}}]


def test_sign_in_pick_the_cpu_environment_and_reach_jupyterlab_in_a_container(hub_factory, browser, container_engine,
                                                                             account_prefix, tmp_path):
    hub = hub_factory.start({"spawner": {"backend": "docker", "docker": {"host": container_engine.url}},
                             "profiles": PROFILES, "environments": {"offer": ["cpu"]},
                             "auth": {"admin_users": ["boss"]}})
    signed_in_user(hub, "carla", "boss")  # a local account with a password

    page = browser.new_page()
    page.set_default_timeout(120_000)
    try:
        browser_sign_in(page, hub, "carla")
        page.wait_for_selector("input[name=profile]")
        page.check("input[name=profile][value=large]")
        page.select_option("#environment", "cpu")
        page.click("#spawn_form button[type=submit]")
        page.wait_for_url("**/user/carla/lab**")
        page.wait_for_selector("#jp-main-dock-panel")
        page.wait_for_selector(".jp-Launcher, .jp-LauncherBody")
        page.screenshot(path=str(tmp_path / "lab-in-a-container.png"))
    finally:
        page.close()

    assert hub.server_model("carla")["user_options"] == {"profile": "large", "environment": "cpu"}
    client = container_engine.client()
    try:
        container = client.containers.get(f"gpulab-{account_name('carla', account_prefix)}")
        assert container.status == "running"
        assert container.attrs["Config"]["Image"].endswith(CPU_IMAGE.split("/", 1)[1])
        assert container.attrs["HostConfig"]["CpuQuota"] == 200_000  # the profile picked in the page
    finally:
        client.close()
