"""The MLflow UI in a real browser (headless Debian chromium through Playwright): signed in to
the hub, the UI loads at /services/mlflow/ and its API calls succeed; without a session the
browser is sent to sign in."""

from __future__ import annotations

import pytest

from tests.support.sessions import browser_sign_in, signed_in_user


pytestmark = pytest.mark.browser

ADMIN = "mlflow-admin"


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start({"auth": {"admin_users": [ADMIN]}})
    signed_in_user(hub, "ursula", ADMIN)  # signed up, approved, and known to the hub
    return hub


def test_a_signed_in_user_sees_the_ui_and_their_experiment(hub, browser, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", hub.user_token("ursula"))
    client = MlflowClient(hub.url + "services/mlflow")
    experiment_id = client.create_experiment("ursula-first-experiment")
    run = client.create_run(experiment_id, run_name="ursula-run-one")
    client.log_metric(run.info.run_id, "loss", 0.25)

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    api_calls: list[tuple[int, str]] = []
    page.on("response", lambda r: api_calls.append((r.status, r.url)) if "/ajax-api/" in r.url else None)

    browser_sign_in(page, hub, "ursula")
    page.wait_for_url("**/hub/**")

    page.goto(hub.url + "hub/home")
    assert page.locator("a[href='/services/mlflow/']", has_text="MLflow").count() >= 1  # the hub's navigation

    page.goto(hub.url + "services/mlflow/")
    page.wait_for_url("**/services/mlflow/**")
    page.get_by_text("ursula-first-experiment").first.wait_for()
    page.goto(hub.url + f"services/mlflow/#/experiments/{experiment_id}/runs")
    page.get_by_text("ursula-run-one").first.wait_for()
    page.screenshot(path=str(tmp_path / "mlflow-ui.png"))
    called = {url.split("/ajax-api/")[1].split("?")[0] for _, url in api_calls}
    assert {"2.0/mlflow/experiments/search", "2.0/mlflow/runs/search"} <= called, called
    disabled = [(status, url) for status, url in api_calls if "/mlflow/assistant/" in url]
    assert all(status == 404 for status, _ in disabled)  # gpulab switches the assistant off
    assert all(status == 200 for status, url in api_calls if (status, url) not in disabled), api_calls
    context.close()


def test_without_a_session_the_ui_sends_the_browser_to_sign_in(hub, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(hub.url + "services/mlflow/")
    page.wait_for_url("**/hub/login**")
    assert page.locator("input[name=password]").count() == 1
    context.close()


def test_the_ui_opens_on_experiments_and_runs_without_telemetry_or_assistant(hub, browser, tmp_path):
    """Issue 15 item 6: MLflow opened on its GenAI view, with a telemetry banner and an assistant
    panel that 404s. A new browser (empty localStorage) must see model training first."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    assistant_calls = []
    page.on("request", lambda r: assistant_calls.append(r.url) if "/mlflow/assistant" in r.url else None)
    browser_sign_in(page, hub, "ursula")
    page.wait_for_url("**/hub/**")
    page.goto(hub.url + "services/mlflow/")
    page.get_by_text("ursula-first-experiment").first.wait_for()
    page.wait_for_load_state("networkidle")  # the UI's data calls are done; banners and panels are drawn
    page.screenshot(path=str(tmp_path / "mlflow-first-open.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'mlflow-first-open.png'}")
    assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") == '"machine_learning"'
    assert page.get_by_text("Information about UI telemetry").count() == 0
    assert page.locator("[data-assistant-ui] textarea, [data-testid*=assistant-chat]").count() == 0
    assert all(not b.is_visible() for b in page.locator("[data-assistant-ui]").all())  # nor its button
    assert not [url for url in assistant_calls if "/sessions" in url], assistant_calls
    # A user's own choice stays theirs: the defaults are written only where nothing is set.
    page.evaluate("localStorage.setItem('mlflow.workflowType_v1', JSON.stringify('genai'))")
    page.reload()
    page.get_by_text("ursula-first-experiment").first.wait_for()
    assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") == '"genai"'
    context.close()
