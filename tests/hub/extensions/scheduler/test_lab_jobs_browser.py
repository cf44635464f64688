"""JupyterLab's "Run as a gpulab job…" in a real browser (issue 21): right-click a train.py in the
file browser, give arguments, submit; the job runs on the central scheduler with those arguments,
the notification names its run, and its log follows in Lab. The Launcher's card opens the same
dialog; the server's refusals are shown whole, as it words them (in a dialog: a toast would cut
them at 140 characters).
"""

from __future__ import annotations

import re

import pytest

from gpulab.hub_config.client import HubClient
from tests.support.scheduler_runs import wait_run
from tests.support.sessions import browser_sign_in, signed_in_user


pytestmark = pytest.mark.browser

ADMIN = "labjobs-admin"
USER = "trainer"
TRAIN = "import sys\nprint('training with', sys.argv[1:])\n"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start({"auth": {"admin_users": [ADMIN]}, "mlflow": {"enabled": False},
                                    "ssh": {"enabled": False}})
    signed_in_user(hub, USER, ADMIN)
    hub.spawn(USER)
    return hub


@pytest.fixture(scope="module")
def user(hub) -> HubClient:
    client = HubClient(hub.url, hub.user_token(USER))
    client.request("PUT", f"user/{USER}/api/contents/train.py", {"type": "file", "format": "text", "content": TRAIN})
    return client


@pytest.fixture
def lab(hub, user, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(90_000)
    browser_sign_in(page, hub, USER)
    page.wait_for_url(f"**/user/{USER}/lab**")  # the server runs: signing in leads to it
    page.wait_for_selector(".jp-DirListing-item[title*='train.py']")
    yield page
    page.close()


def toast(page, text: str):
    return page.locator(".Toastify__toast", has_text=text).first


def test_right_click_a_script_run_it_with_arguments_and_follow_its_log(hub, user, lab, tmp_path):
    lab.locator(".jp-DirListing-item[title*='train.py']").click(button="right")
    lab.locator(".lm-Menu-item", has_text="Run as a gpulab job…").click()
    dialog = lab.locator(".jp-Dialog")
    assert dialog.locator("input[name=script]").input_value() == "train.py"
    assert dialog.locator("select[name=profile]").input_value() == "cpu"  # the hub's default profile
    dialog.locator("input[name=arguments]").fill("--lr 0.01 --note 'two words'")
    lab.screenshot(path=str(tmp_path / "dialog.png"))
    dialog.locator("button.jp-mod-accept").click()

    note = toast(lab, "submitted")
    note.screenshot(path=str(tmp_path / "submitted-toast.png"))  # once it has stopped sliding in
    lab.screenshot(path=str(tmp_path / "submitted.png"))
    run_id = re.search(r"run ([0-9a-f-]{36})", note.inner_text()).group(1)
    run = wait_run(user, run_id)
    assert (run["status"], run["kind"], run["command"]) == (
        "COMPLETED", "script", ["python", "train.py", "--lr", "0.01", "--note", "two words"]), run
    log = user.request("GET", f"services/scheduler/api/runs/{run_id}/log")["text"]
    assert "training with ['--lr', '0.01', '--note', 'two words']" in log, log

    note.locator("button", has_text="Show log").click()
    panel = lab.locator(".jp-gpulab-JobLog-text")
    panel.filter(has_text="training with ['--lr', '0.01', '--note', 'two words']").wait_for()
    lab.locator(".lm-TabBar-tab", has_text="(ended)").wait_for()
    lab.screenshot(path=str(tmp_path / "log.png"))

    with lab.context.expect_page() as opened:  # the scheduler's page, where the run has its row
        lab.locator(".jp-gpulab-JobLog-header a", has_text="runs page").click()
    runs = opened.value
    runs.locator(f"tr[data-run='{run_id}']", has_text="COMPLETED").wait_for()
    runs.screenshot(path=str(tmp_path / "runs-page.png"))


def test_the_launcher_asks_for_the_script_and_refusals_are_shown_verbatim(lab, tmp_path):
    lab.locator(".jp-LauncherCard", has_text="Run a script as a job").click()
    dialog = lab.locator(".jp-Dialog")
    assert dialog.locator("input[name=script]").input_value() == ""  # nothing selected or opened: it asks
    dialog.locator("input[name=script]").fill("missing.py")
    dialog.locator("button.jp-mod-accept").click()
    assert refusal_shown(lab) == "no such file: 'missing.py'"
    lab.screenshot(path=str(tmp_path / "refused.png"))
    lab.locator(".jp-Dialog button", has_text="Close").click()

    lab.locator(".jp-DirListing-item[title*='train.py']").click(button="right")
    lab.locator(".lm-Menu-item", has_text="Run as a gpulab job…").click()
    lab.locator(".jp-Dialog input[name=arguments]").fill("--note 'unclosed")
    lab.locator(".jp-Dialog button.jp-mod-accept").click()
    assert refusal_shown(lab) == "arguments: No closing quotation"


def refusal_shown(page) -> str:
    """The text of the error dialog that replaces the job's dialog."""
    refusal = page.locator(".jp-Dialog", has_text="The job was not submitted")
    return refusal.locator(".jp-Dialog-body").inner_text().strip()


def test_a_post_without_the_xsrf_token_is_refused(hub, lab):
    """The route is a jupyter_server API handler: a page's request with the session cookie but
    without X-XSRFToken is refused, as other handlers refuse it."""
    status = lab.evaluate("""async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({path: 'train.py'})})).status""",
                          hub.url + f"user/{USER}/gpulab/jobs")
    assert status == 403
