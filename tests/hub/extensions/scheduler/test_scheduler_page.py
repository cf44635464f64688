"""The hub's Schedules page in a real browser: create a schedule from a notebook file, pause and
resume it, edit it, run it now and watch the run end, stop a run, delete the schedule."""

from __future__ import annotations

import json

import pytest

from tests.support.scheduler_runs import notebook
from tests.support.sessions import admin_password, browser_sign_in


pytestmark = pytest.mark.browser
USER = "planner"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"auth": {"admin_users": [USER]}, "mlflow": {"enabled": False},
                                     "ssh": {"enabled": False}})


def test_schedules_are_managed_on_the_page(hub, browser, tmp_path):
    (tmp_path / "report.ipynb").write_text(json.dumps(notebook("print('hello', n)", parameters="n = 0")))
    (tmp_path / "slow.ipynb").write_text(json.dumps(notebook("import time; time.sleep(600)")))
    page = browser.new_page()
    page.set_default_timeout(90_000)
    browser_sign_in(page, hub, USER, admin_password(hub, USER))
    page.wait_for_url("**/hub/**")
    page.goto(hub.url + "services/scheduler/")
    page.wait_for_selector("#no-schedules")

    def create(name: str, cron: str, parameters: str = "") -> None:
        page.set_input_files("#notebook-file", str(tmp_path / name))
        page.fill("#schedule-cron", cron)
        page.fill("#schedule-parameters", parameters)
        page.click("#create-schedule button[type=submit]")

    create("report.ipynb", "every day")  # refused with the reason, nothing created
    page.wait_for_selector("#schedule-error:has-text('invalid cron expression')")
    create("report.ipynb", "0 6 * * *", '{"n": 7}')
    row = "#schedules tr:has-text('report')"
    page.wait_for_selector(f"{row} .state:has-text('active')")

    page.click(f"{row} button[data-action=pause]")
    page.wait_for_selector(f"{row} .state:has-text('paused')")
    page.click(f"{row} button[data-action=resume]")
    page.wait_for_selector(f"{row} .state:has-text('active')")

    page.click(f"{row} button[data-action=edit]")
    page.wait_for_selector("#edit-schedule:not([hidden])")
    assert page.input_value("#edit-parameters") == '{"n":7}'
    page.fill("#edit-cron", "30 7 * * 1-5")
    page.fill("#edit-parameters", '{"n": 8}')
    page.click("#edit-schedule button[type=submit]")
    page.wait_for_selector(f"{row} code:has-text('30 7 * * 1-5')")

    page.click(f"{row} button[data-action=run]")
    page.wait_for_selector("#runs tr:has-text('report') .status:has-text('COMPLETED')")  # the page follows the run
    page.wait_for_selector("#runs tr:has-text('report') a:has-text('output.ipynb')")
    assert "3 / 3 cells" in page.inner_text("#runs tr:has-text('report') .progress-cells")  # with the injected one
    run_id = page.get_attribute("#runs tr:has-text('report')", "data-run")
    executed = page.request.get(hub.url + f"services/scheduler/api/runs/{run_id}/files/output.ipynb").json()
    assert "hello 8" in "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))

    create("slow.ipynb", "0 6 * * *")
    page.wait_for_selector("#schedules tr:has-text('slow')")
    page.click("#schedules tr:has-text('slow') button[data-action=run]")
    page.click("#runs tr:has-text('slow') .stop-run")
    page.wait_for_selector("#runs tr:has-text('slow') .status:has-text('STOPPED')")

    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f"{row} button[data-action=delete]")
    page.wait_for_selector(row, state="detached")
    page.screenshot(path=str(tmp_path / "schedules.png"))
    page.close()


def test_a_notebook_in_a_project_folder_is_scheduled_from_the_page_and_runs_beside_its_files(hub, browser, tmp_path):
    """Issue 13: the page schedules a notebook from the user's home or a project folder (the
    service reads it as the user), and the run starts in the notebook's folder."""
    from gpulab.hub_config.client import ClientError, HubClient
    from tests.support.projects import create_project

    hub.create_user("outsider")
    hub.spawn(USER)
    create_project(hub, USER, "reports", {})
    mine = HubClient(hub.url, hub.user_token(USER))
    nb = notebook("import os; print('cwd', os.path.basename(os.getcwd())); print(open('data.txt').read())")
    mine.request("PUT", f"user/{USER}/api/contents/projects/reports/daily.ipynb", {"type": "notebook", "content": nb})
    mine.request("PUT", f"user/{USER}/api/contents/projects/reports/data.txt",
                 {"type": "file", "format": "text", "content": "beside the notebook"})
    outsider = HubClient(hub.url, hub.user_token("outsider"))
    with pytest.raises(ClientError) as refused:  # another user cannot read it through the service
        outsider.request("GET", "services/scheduler/api/notebooks?path=projects/reports/daily.ipynb")
    assert refused.value.status == 404
    for bad in ("../x.ipynb", "/etc/passwd", "notes.txt"):
        with pytest.raises(ClientError) as refused:
            mine.request("GET", f"services/scheduler/api/notebooks?path={bad}")
        assert refused.value.status == 400

    page = browser.new_page()
    page.set_default_timeout(90_000)
    browser_sign_in(page, hub, USER, admin_password(hub, USER))
    page.wait_for_load_state()
    page.goto(hub.url + "services/scheduler/")
    page.wait_for_selector("#notebook-path option[value='projects/reports/daily.ipynb']", state="attached")
    page.select_option("#notebook-path", "projects/reports/daily.ipynb")
    page.fill("#schedule-cron", "0 5 * * *")
    page.click("#create-schedule button[type=submit]")
    row = "#schedules tr:has-text('daily')"
    page.wait_for_selector(f"{row} .state:has-text('active')")
    page.click(f"{row} button[data-action=run]")
    page.wait_for_selector("#runs tr:has-text('daily') .status:has-text('COMPLETED')")
    page.screenshot(path=str(tmp_path / "schedule-from-project.png"))
    run_id = page.get_attribute("#runs tr:has-text('daily')", "data-run")
    executed = page.request.get(hub.url + f"services/scheduler/api/runs/{run_id}/files/output.ipynb").json()
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "cwd files" in printed and "beside the notebook" in printed, printed  # the project folder: <root>/reports/files
    page.close()
