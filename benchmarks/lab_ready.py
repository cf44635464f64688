""""Start" click → JupyterLab usable, in a real browser (headless Debian chromium, Playwright).

The user is signed in and on the hub's home page with no server running. Timed from the click on
"Start" (submitting the spawn form too if the hub shows one: that is part of what the user does)
until JupyterLab's launcher and file browser are shown. Then the server is stopped through the
API and the next round starts from the home page again. Each round times two visits, one row each:

- first visit: a new browser context (an empty HTTP cache) holding only the hub's sign-in cookies,
  as a browser that never opened JupyterLab from this hub
- returning: one browser context for all rounds, which loaded JupyterLab once before the first
  (untimed), as the same user's browser the next day: what the server lets it cache comes from
  its cache

N rounds (default 5) per hub, one hub after the other in one run, with the load average before
and after (a busy machine slows every row):

- gpulab: `gpulab up` (local backend, a system account per user as root, traefik)
- stock JupyterHub + LocalProcessSpawner + traefik, DummyAuthenticator, the same JupyterLab

Run: `.venv/bin/python benchmarks/lab_ready.py [-n 5]` (as root; needs /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.spawn_latency import (  # noqa: E402
    end_processes_in, remove_benchmark_accounts, stock_hub, system_user_for_stock,
)
from gpulab.hub_config.client import HubClient  # noqa: E402
from tests.support.hub import prepare_hub, wait_for  # noqa: E402
from tests.support.sessions import admin_password  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
STOCK_PASSWORD = "bench-password"
STOCK_AUTH = f"""
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "{STOCK_PASSWORD}"
"""
USABLE = ".jp-Launcher, .jp-LauncherBody"
FILE_BROWSER = ".jp-DirListing-content"


def sign_in(page, url: str, name: str, password: str) -> None:
    page.goto(url + "hub/login?next=%2Fhub%2Fhome")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/hub/home**")


def click_start_until_lab(page, url: str, name: str) -> tuple[float, float]:
    """One round from the home page: seconds from the click to JupyterLab's URL, and to it usable."""
    page.goto(url + "hub/home")
    page.wait_for_selector("#start")
    started = time.perf_counter()
    page.click("#start")
    page.wait_for_url(lambda u: "/hub/spawn" in u or "/lab" in u, timeout=120_000)
    if "/hub/spawn" in page.url and page.locator("#spawn_form").count():
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    page.wait_for_url(f"**/user/{name}/lab**", timeout=120_000, wait_until="commit")
    at_lab = time.perf_counter() - started
    page.wait_for_selector(USABLE, timeout=120_000)
    page.wait_for_selector(FILE_BROWSER, timeout=120_000)
    return at_lab, time.perf_counter() - started


def rounds(browser, url: str, api: HubClient, name: str, password: str, count: int) -> dict[str, list[tuple[float, float]]]:
    """{"first": [...], "returning": [...]}: (seconds to JupyterLab's URL, to it usable) per round."""
    def stop() -> None:
        api.request("DELETE", f"hub/api/users/{name}/server")
        wait_for(lambda: api.request("GET", f"hub/api/users/{name}")["servers"] == {}, 60, "the stop")

    returning = browser.new_context()
    try:
        page = returning.new_page()
        sign_in(page, url, name, password)
        signed_in = returning.storage_state()  # the hub's cookies only: no server has run yet
        click_start_until_lab(page, url, name)  # fills this browser's cache (untimed)
        stop()
        durations: dict[str, list[tuple[float, float]]] = {"first": [], "returning": []}
        for _ in range(count):
            first = browser.new_context(storage_state=signed_in)
            try:
                durations["first"].append(click_start_until_lab(first.new_page(), url, name))
            finally:
                first.close()
            stop()
            durations["returning"].append(click_start_until_lab(page, url, name))
            stop()
        return durations
    finally:
        returning.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5, help="rounds per hub (default 5)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    prefix = f"l{os.getpid() % 10000}-"
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gpulab-bench-", dir="/tmp") as tmp, sync_playwright() as playwright:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        (workdir / "homes").mkdir(mode=0o755)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            hub = prepare_hub(workdir / "gpulab", {"auth": {"admin_users": ["bench"]}, "spawner": {"local": {
                "account_prefix": prefix, "home_root": str(workdir / "homes")}}}).start()
            try:
                rows.append(("gpulab (local backend, traefik)",
                             rounds(browser, hub.url, hub.api, "bench", admin_password(hub, "bench"), args.n)))
            finally:
                hub.stop()
            stock_user = f"{prefix}stock"
            system_user_for_stock(stock_user, workdir / "homes")
            api, stop, _ = stock_hub(workdir / "stock", "traefik", STOCK_AUTH)
            try:
                rows.append(("JupyterHub LocalProcessSpawner (traefik)",
                             rounds(browser, api.url, api, stock_user, STOCK_PASSWORD, args.n)))
            finally:
                stop()
        finally:
            browser.close()
            remove_benchmark_accounts(prefix)
            end_processes_in(workdir)

    load_after = os.getloadavg()
    print(f"\n\"Start\" click -> JupyterLab's launcher and file browser shown, {args.n} rounds each\n")
    print(f"{'hub':44} {'visit':10} {'median s':>9} {'min s':>7} {'max s':>7} {'of which to /lab':>17} {'/lab to usable':>15}")
    medians = {}
    for label, by_visit in rows:
        for visit, title in (("first", "first"), ("returning", "returning")):
            timings = by_visit[visit]
            durations = [usable for _, usable in timings]
            medians[label, visit] = statistics.median(durations)
            print(f"{label:44} {title:10} {medians[label, visit]:9.3f} {min(durations):7.3f} {max(durations):7.3f} "
                  f"{statistics.median(at_lab for at_lab, _ in timings):17.3f} "
                  f"{statistics.median(usable - at_lab for at_lab, usable in timings):15.3f}")
    (gpulab, _), (stock, _) = rows
    for visit in ("first", "returning"):
        print(f"\ngpulab / stock, {visit} visit: {medians[gpulab, visit] / medians[stock, visit]:.2f}", end="")
    print("  (issue 16's goal: gpulab at most 3 s)")
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
        *load_before, *load_after))


if __name__ == "__main__":
    main()
