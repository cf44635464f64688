"""A person's first visit, in a real browser (headless Debian chromium through Playwright)."""

from __future__ import annotations

import subprocess

import pytest

from gpulab.hub_config.services.service_account import service_account_name
from tests.support.hub import wait_for
from tests.support.sessions import browser_sign_in


pytestmark = pytest.mark.browser


@pytest.fixture
def hub(hub_factory):
    return hub_factory.start({"auth": {"admin_users": ["root-admin"]}})


def initial_password(hub, name: str) -> str:
    path = hub.data_dir / "initial-admin-password"
    wait_for(path.exists, 30, "the initial admin password file")
    lines = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    return lines[name]


def test_admin_signs_in_starts_jupyterlab_and_stops_it_from_home(hub, browser, tmp_path):
    page = browser.new_page()
    page.set_default_timeout(90_000)
    browser_sign_in(page, hub, "root-admin", initial_password(hub, "root-admin"))

    # The spawn page offers the profiles; Start shows progress, then JupyterLab loads.
    page.wait_for_selector("input[name=profile]")
    assert page.is_checked("input[name=profile][value=cpu]")
    page.screenshot(path=str(tmp_path / "spawn-page.png"))
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    page.wait_for_url("**/user/root-admin/lab**")
    page.wait_for_selector("#jp-main-dock-panel")
    page.wait_for_selector(".jp-Launcher, .jp-LauncherBody")
    page.screenshot(path=str(tmp_path / "jupyterlab.png"))
    assert hub.server_model("root-admin")["ready"]

    page.goto(hub.url + "hub/home")
    page.click("#stop")
    page.wait_for_selector("#start", state="visible")
    wait_for(lambda: hub.server_model("root-admin") is None, 60, "the server to stop")
    page.screenshot(path=str(tmp_path / "home-stopped.png"))
    page.close()


def test_the_initial_password_file_is_private(hub):
    initial_password(hub, "root-admin")
    assert (hub.data_dir / "initial-admin-password").stat().st_mode & 0o777 == 0o600
    # Others get nothing; the group bits show the ACL's mask: the services' own accounts may pass
    # through to their folders (search only), and no one else has an entry.
    assert (hub.data_dir).stat().st_mode & 0o707 == 0o700
    acl = subprocess.run(["getfacl", "--omit-header", "--absolute-names", str(hub.data_dir)],
                         capture_output=True, text=True, check=True).stdout.split()
    named = [entry.split(":") for entry in acl if entry.startswith("user:") and entry.split(":")[1]]
    prefix = service_account_name(hub.settings["spawner"]["local"]["account_prefix"], "")
    assert all(name.startswith(prefix) and bits == "--x" for _, name, bits in named), acl
