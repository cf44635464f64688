"""The "SSH keys" page in a real browser: sign in, add a key, see its fingerprint, delete it."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.sessions import admin_password, browser_sign_in
from tests.support.ssh import make_key


pytestmark = pytest.mark.browser


@pytest.fixture
def hub(hub_factory):
    return hub_factory.start({"auth": {"admin_users": ["keeper"]}})


def test_a_key_is_added_and_deleted_on_the_page(hub, browser, tmp_path):
    key = make_key(tmp_path, "laptop")
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(key.with_suffix(".pub"))],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    page = browser.new_page()
    page.set_default_timeout(60_000)
    browser_sign_in(page, hub, "keeper", admin_password(hub, "keeper"))
    page.wait_for_url("**/hub/**")

    page.goto(hub.url + "hub/home")
    page.click("a.nav-link:has-text('SSH keys')")
    page.wait_for_selector("#ssh-keys")
    assert "No keys yet." in page.inner_text("#key-list")
    assert "User keeper" in page.inner_text("#ssh-config")

    page.fill("#public-key", "ssh-ed25519 not-a-key")
    page.click("#add-key button[type=submit]")
    page.wait_for_selector("#key-error:has-text('not an OpenSSH public key')")

    page.fill("#public-key", key.with_suffix(".pub").read_text())
    page.fill("#comment", "my laptop")
    page.click("#add-key button[type=submit]")
    page.wait_for_selector(f"#key-list code:has-text('{fingerprint}')")
    assert "my laptop" in page.inner_text("#key-list")
    page.screenshot(path=str(tmp_path / "ssh-keys.png"))

    page.click(".delete-key")
    page.wait_for_selector("#key-list:has-text('No keys yet.')")
    page.close()
