"""The hub's Usage page in a real browser: the nav link, the charts drawn by Chart.js from the
API, the table and the CSV download, after a server held an emulated GPU (no real GPU here:
tests/support/declared_gpus.py reports the utilisation)."""

from __future__ import annotations

import pytest

from tests.support.declared_gpus import write_readings
from tests.support.hub import wait_for
from tests.support.sessions import admin_password, browser_sign_in
from tests.support.usage_hub import live_reading, start_usage_hub


pytestmark = pytest.mark.browser
ADMIN = "gpu-admin"  # an admin_users entry of the GPU test hubs


@pytest.fixture
def hub(hub_factory, hubs_root):
    return start_usage_hub(hub_factory, hubs_root)


def test_the_usage_page_draws_charts_of_the_hours_held(hub, browser, tmp_path):
    hub.create_user("alice")
    hub.spawn("alice", options={"profile": "gpu"})
    hub.create_user(ADMIN, admin=True)
    token = hub.user_token(ADMIN)
    wait_for(lambda: live_reading(hub, token), 60, "the usage service to sample alice's GPU")

    page = browser.new_page()
    page.set_default_timeout(60_000)
    problems = []  # shown if the page does not load: script errors and failed requests
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
    browser_sign_in(page, hub, ADMIN, admin_password(hub, ADMIN))
    page.wait_for_url("**/hub/**")
    page.click("a.nav-link:has-text('Usage')")  # the registry's navigation link
    try:
        page.wait_for_selector("#usage-page[data-loaded=true]")
    except Exception:
        page.screenshot(path=str(tmp_path / "usage-not-loaded.png"), full_page=True)
        raise AssertionError(f"the Usage page did not load: {problems}") from None
    page.wait_for_selector("#live-table tr:has-text('alice')")  # the live table, while the GPU is held
    hub.stop_server("alice")
    page.click("#usage-form button[type=submit]")
    page.wait_for_selector("#usage-table tr[data-key=alice]")

    # Chart.js, as the page loaded it (through the hub's RequireJS): its charts on the two canvases
    drawn = page.evaluate("""async () => {
      const Chart = await new Promise(done => require([document.querySelector("#usage-page").dataset.chartjs], done));
      return ["gpu-chart", "hours-chart"].map(id => {
        const chart = Chart.getChart(id);
        const canvas = document.getElementById(id);
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
        return {labels: chart.data.labels, datasets: chart.data.datasets.map(d => d.label),
                values: chart.data.datasets.map(d => d.data), width: canvas.width, painted: painted};
      });
    }""")
    gpu, hours = drawn
    assert gpu["labels"] == ["alice"] and gpu["datasets"] == ["busy GPU-hours", "idle GPU-hours"]
    assert hours["datasets"] == ["CPU-hours", "server-hours"]
    assert sum(gpu["values"][0]) + sum(gpu["values"][1]) > 0  # the hours alice held
    assert all(chart["width"] > 0 and chart["painted"] > 500 for chart in drawn)  # axes, labels and bars

    with page.expect_download() as download:
        page.click("#csv-link")
    lines = open(download.value.path()).read().splitlines()
    assert lines[0].startswith("user,gpu_hours") and lines[1].startswith("alice,")

    page.select_option("#by", "profile")
    page.click("#usage-form button[type=submit]")
    page.wait_for_selector("#usage-table tr[data-key=gpu]")
    page.screenshot(path=str(tmp_path / "usage.png"), full_page=True)
    page.close()


def test_the_home_page_shows_the_gpus_a_server_holds_with_live_readings(hub, browser, tmp_path):
    hub.create_user(ADMIN, admin=True)
    token = hub.user_token(ADMIN)
    hub.spawn(ADMIN, options={"profile": "gpu"})
    wait_for(lambda: live_reading(hub, token), 60, "the usage service to sample the GPU")

    page = browser.new_page()
    page.set_default_timeout(60_000)
    browser_sign_in(page, hub, ADMIN, admin_password(hub, ADMIN))
    page.goto(f"{hub.url}hub/home")
    frame = page.frame_locator("#gpulab-gpus iframe")  # the usage service's page, signed in through OAuth
    row = frame.locator("tr[data-device='GPU-00000000-test']")
    try:
        row.wait_for()
    finally:
        page.screenshot(path=str(tmp_path / "home-gpus.png"), full_page=True)
    # the emulated GPU reads 90% and 1000 MiB (start_usage_hub)
    assert row.locator("td").all_inner_texts() == ["default server", "gpu", "-", "GPU-00000000-test", "90%", "1000 MiB"]
    # the readings move with the GPU: the frame reloads itself
    write_readings(hub.readings, {"GPU-00000000-test": {"utilization": 7, "memory_used_mb": 20}})
    frame.locator("tr[data-device='GPU-00000000-test'] td:has-text('7%')").wait_for()

    hub.stop_server(ADMIN)
    page.goto(f"{hub.url}hub/home")
    page.wait_for_selector("#start")
    assert page.locator("#gpulab-gpus").count() == 0  # a stopped server holds nothing
