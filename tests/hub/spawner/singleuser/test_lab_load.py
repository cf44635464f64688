"""JupyterLab's page load behind a real hub, a real server and a real browser (headless Debian
chromium through Playwright): the launcher as soon as the layout is restored (lab_ready.py) and
the Lab extensions' hashed files cacheable for good (static_cache.py), as issue 16 measured them."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.support.sessions import admin_password, browser_sign_in


pytestmark = [pytest.mark.root, pytest.mark.browser]

USER = "lena"
# Set before JupyterLab's own scripts: when the launcher and the file browser's listing first show,
# and when the page first saves the workspace (JupyterLab's router, and with it stock JupyterLab's
# launcher and file browser, waits for that save).
TIMELINE = """(() => {
  window.__seen = {};
  const mark = name => { if (!(name in window.__seen)) window.__seen[name] = performance.now(); };
  const fetch0 = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : input.url;
    const method = (init && init.method) || (typeof input === "string" ? "GET" : input.method);
    if (method === "PUT" && url.includes("/lab/api/workspaces/")) mark("workspace-saved");
    return fetch0.apply(this, arguments);
  };
  const shown = selector => {
    const node = document.querySelector(selector);
    const box = node && node.getBoundingClientRect();
    return box && box.width > 0 && box.height > 0;
  };
  setInterval(() => {
    if (shown(".jp-Launcher")) mark("launcher");
    if (shown(".jp-DirListing-content")) mark("file-browser");
  }, 5);
})();"""


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start({"auth": {"admin_users": [USER]}})
    hub.spawn(USER)
    return hub


@pytest.fixture
def page(hub, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    browser_sign_in(page, hub, USER, admin_password(hub, USER))
    page.wait_for_url(lambda url: "/hub/login" not in url)  # the hub sends her on to her running server
    yield page
    context.close()


def lab_page_config(hub) -> dict:
    session = requests.Session()
    session.headers["Authorization"] = f"token {hub.user_token(USER)}"
    page = session.get(f"{hub.url}user/{USER}/lab")
    assert page.status_code == 200, page.status_code
    return json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                page.text, re.S).group(1))


def test_launcher_and_file_browser_show_before_the_workspace_save_stock_jupyterlab_waits_for(hub, page):
    page.add_init_script(TIMELINE)
    page.goto(f"{hub.url}user/{USER}/lab")
    page.wait_for_selector(".jp-Launcher")
    page.wait_for_function("'workspace-saved' in window.__seen && 'file-browser' in window.__seen")
    seen = page.evaluate("window.__seen")
    assert seen["launcher"] < seen["workspace-saved"], seen
    assert seen["file-browser"] < seen["workspace-saved"], seen
    page.wait_for_timeout(1500)  # JupyterLab's own launcher logic has run by now
    assert page.locator(".jp-Launcher").count() == 1
    assert page.locator(".jp-DirListing-content").count() == 1


def test_a_document_url_and_a_restored_document_open_no_launcher(hub, page):
    requests.put(f"{hub.url}user/{USER}/api/contents/notes.md", json={"type": "file", "format": "text", "content": "# hi"},
                 headers={"Authorization": f"token {hub.user_token(USER)}"}).raise_for_status()
    page.goto(f"{hub.url}user/{USER}/lab/tree/notes.md")
    page.wait_for_selector(".jp-FileEditor")
    page.wait_for_timeout(1500)
    assert page.locator(".jp-Launcher").count() == 0
    page.goto(f"{hub.url}user/{USER}/lab")  # the workspace reopens notes.md
    page.wait_for_selector(".jp-FileEditor")
    page.wait_for_timeout(1500)
    assert page.locator(".jp-Launcher").count() == 0
    page.locator("#jp-main-dock-panel .lm-TabBar-tabCloseIcon").first.click()
    page.wait_for_selector(".jp-Launcher")  # an empty main area gets JupyterLab's launcher as before
    assert page.locator(".jp-Launcher").count() == 1


def test_lab_extensions_hashed_files_are_immutable_behind_the_hub(hub):
    config = lab_page_config(hub)
    extensions = {e["name"]: e for e in config["federated_extensions"]}
    assert "@gpulab/lab-ready" in extensions
    base = f"{hub.url}user/{USER}/lab/extensions/"
    for name in ("@gpulab/lab-ready", "@jupyterhub/jupyter-server-proxy"):
        response = requests.get(base + f"{name}/{extensions[name]['load']}")
        assert response.status_code == 200, (name, response.status_code)
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable", name
    unhashed = requests.get(base + "@gpulab/lab-ready/package.json")
    assert unhashed.status_code == 200 and unhashed.headers["Cache-Control"] == "no-cache"
