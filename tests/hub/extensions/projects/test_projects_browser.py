"""The Projects pages in a real browser (headless Debian chromium through Playwright): a team
lead finds Projects in the hub's menu, creates a project and adds a member with the forms."""

from __future__ import annotations

import pytest

from tests.support.projects import project_settings
from tests.support.sessions import browser_sign_in, signed_in_user


pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    settings = {**project_settings(projects_root, account_prefix, "b"), "auth": {"admin_users": ["hub-admin"]}}
    return module_hub_factory.start(settings)


def test_a_lead_creates_a_project_and_adds_a_member_in_the_browser(hub, browser, tmp_path):
    signed_in_user(hub, "lead", "hub-admin")  # a local account with a password
    hub.create_user("bob")
    page = browser.new_page()
    page.set_default_timeout(60_000)
    browser_sign_in(page, hub, "lead")
    page.wait_for_url("**/hub/**")

    # Projects is in the hub's own navigation bar; the page keeps the hub's look and menu
    page.goto(hub.url + "hub/home")
    page.click("nav a.nav-link:text-is('Projects')")
    page.wait_for_selector("#create-project")
    assert page.is_visible("#no-projects") and page.is_visible("#jupyterhub-logo")
    page.fill("#project-name", "vision")
    page.fill("#project-description", "computer vision")
    page.click("#create-project button[type=submit]")

    page.wait_for_selector("#gpulab-project[data-project=vision]")
    assert page.inner_text("#your-role") == "maintainer"
    page.fill("#member-name", "bob")
    page.select_option("#member-role", "editor")
    page.click("#add-member button[type=submit]")
    row = page.wait_for_selector("tr[data-member='user:bob']")
    assert row.query_selector("select[name=role]").evaluate("s => s.value") == "editor"
    page.screenshot(path=str(tmp_path / "project.png"), full_page=True)

    # a refusal comes back as a page with the reason, in the hub's look
    page.fill("#member-name", "nobody-here")
    page.click("#add-member button[type=submit]")
    page.wait_for_selector("text=there is no hub user named 'nobody-here'")

    page.goto(hub.url + "services/projects/")
    assert page.inner_text("tr[data-project=vision]").split("\t")[:3] == ["vision", "computer vision", "maintainer"]
    page.close()

    groups = hub.api.request("GET", "hub/api/users/bob")["groups"]
    assert groups == ["project:vision:editor"]
