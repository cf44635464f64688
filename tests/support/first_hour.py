"""Helpers for the "first hour of a team" browser journey (tests/hub/test_first_hour_browser.py).

A `Person` is one browser context (their own cookies) with one page. Every page they visit is
checked by `Journey.check`: a screenshot kept in the journey's folder, the main document's HTTP
status, no error text, stylesheets applied. Console errors, page errors and failed same-origin
responses are collected for the whole journey, each tagged with the step it happened in, and
asserted at the end so one run lists every problem instead of stopping at the first.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page


# Error text of JupyterHub's, Jupyter Server's and tornado's error pages.
ERROR_TEXT = re.compile(r"Unhandled error|Internal Server Error|\b500 ?: |\b404 ?: Not Found|\b50[234] ?: ")

# Same-origin responses that fail on purpose. Each entry: (url pattern, status, why).
ALLOWED_FAILURES = [
    # gpulab switches MLflow's assistant off: its endpoints answer 404 (tests/hub/extensions/mlflow/test_mlflow_browser.py
    # asserts exactly that); the MLflow UI still probes them once.
    (re.compile(r"/services/mlflow/.*/mlflow/assistant/"), 404, "MLflow's assistant, switched off by gpulab"),
]


@dataclass
class Problem:
    step: str
    who: str
    what: str

    def __str__(self) -> str:
        return f"[{self.step}] {self.who}: {self.what}"


@dataclass
class Journey:
    hub_url: str
    folder: Path
    step_name: str = "setup"
    problems: list[Problem] = field(default_factory=list)
    shots: int = 0
    responses_seen: int = 0  # same-origin responses the listeners saw: proof they are attached
    allowed_seen: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def step(self, name: str):
        """A named step: a failure inside it says which step of the journey broke."""
        self.step_name = name
        began = time.monotonic()
        print(f"\n--- step: {name}", flush=True)
        try:
            yield
        except Exception as error:  # noqa: BLE001 - re-raised with the step's name
            raise AssertionError(f"the journey broke at step {name!r}: {type(error).__name__}: {str(error)[:1500]}") from error
        finally:
            print(f"    ({time.monotonic() - began:.1f}s, {time.monotonic() - self.started:.0f}s in)", flush=True)

    def person(self, browser, name: str) -> "Person":
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.set_default_timeout(90_000)
        person = Person(self, name, context, page)
        page.on("console", person._on_console)
        page.on("pageerror", lambda error: self.note(name, f"page error: {error}"))
        page.on("response", person._on_response)
        page.on("requestfailed", person._on_request_failed)
        return person

    def note(self, who: str, what: str) -> None:
        print(f"    problem: [{self.step_name}] {who}: {what}", flush=True)
        self.problems.append(Problem(self.step_name, who, what))

    def same_origin(self, url: str) -> bool:
        return urlsplit(url).netloc == urlsplit(self.hub_url).netloc


@dataclass
class Person:
    journey: Journey
    name: str
    context: BrowserContext
    page: Page
    document_status: int | None = None

    # ------------------------------------------------------------ what the browser reports

    def _on_console(self, message) -> None:
        if message.type != "error":
            return
        # "Failed to load resource: ... status of 404" repeats a failed response without its URL;
        # the response itself is checked (with its URL and the allow-list) in _on_response.
        if message.text.startswith("Failed to load resource"):
            return
        self.journey.note(self.name, f"console error on {self.page.url}: {message.text[:300]}")

    def _on_response(self, response) -> None:
        request = response.request
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self.document_status = response.status
        if not self.journey.same_origin(response.url):
            return
        self.journey.responses_seen += 1
        if response.status < 400:
            return
        for pattern, status, why in ALLOWED_FAILURES:
            if response.status == status and pattern.search(response.url):
                self.journey.allowed_seen.append(f"{response.status} {response.url} ({why})")
                return
        self.journey.note(self.name, f"{response.status} {request.method} {response.url} "
                                     f"({request.resource_type}, on {self.page.url})")

    def _on_request_failed(self, request) -> None:
        failure = request.failure or ""
        # A request the browser aborted because the page navigated away, or a websocket/long poll
        # cut when the page closed, is not a broken asset: net::ERR_ABORTED is the browser's own doing.
        if "ERR_ABORTED" in failure or not self.journey.same_origin(request.url):
            return
        self.journey.note(self.name, f"request failed: {request.method} {request.url} ({failure})")

    # ------------------------------------------------------------ pages

    def goto(self, path: str, label: str, wait_for: str | None = None):
        response = self.page.goto(self.journey.hub_url + path.lstrip("/"))
        if response is not None:
            self.document_status = response.status
        if wait_for:
            self.page.wait_for_selector(wait_for)
        return self.check(label)

    def check(self, label: str, settle_ms: int = 500) -> Path:
        """Screenshot the page and assert it is a styled page without an error."""
        page = self.page
        page.wait_for_load_state("load")
        page.wait_for_timeout(settle_ms)
        self.journey.shots += 1
        shot = self.journey.folder / f"{self.journey.shots:02d}-{self.name}-{label}.png"
        page.screenshot(path=str(shot), full_page=False)
        print(f"    screenshot: {shot}  ({page.url})", flush=True)
        status = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                               " return n && n.responseStatus ? n.responseStatus : null; }") or self.document_status
        assert status is not None and status < 400, f"{label}: the page {page.url} answered {status} (see {shot})"
        text = page.inner_text("body")
        found = ERROR_TEXT.search(text)
        assert not found, f"{label}: {page.url} shows {found.group(0)!r}: {text[:400]!r} (see {shot})"
        style = page.evaluate("() => ({sheets: document.styleSheets.length,"
                              " font: getComputedStyle(document.body).fontFamily})")
        assert style["sheets"] > 0, f"{label}: {page.url} has no stylesheet (see {shot})"
        assert not style["font"].strip().strip('"\'').lower().startswith("times"), \
            f"{label}: {page.url} renders in the browser's default font {style['font']!r}: unstyled (see {shot})"
        return shot

    def sign_in(self, password: str, label: str = "signed-in"):
        self.goto("hub/login?next=%2Fhub%2Fhome", "login", "input[name=password]")
        self.page.fill("input[name=username]", self.name)
        self.page.fill("input[name=password]", password)
        self.page.click("input[type=submit], button[type=submit]")
        self.page.wait_for_url("**/hub/home**")
        self.page.wait_for_selector("#start, #stop")
        return self.check(label)

    def xsrf(self, prefix: str) -> str:
        """The `_xsrf` cookie a server under `prefix` set (Jupyter wants it echoed as X-XSRFToken)."""
        cookies = self.context.cookies(self.journey.hub_url + prefix)
        values = [c["value"] for c in cookies if c["name"] == "_xsrf"]
        assert values, f"{self.name} has no _xsrf cookie for {prefix}: {[c['name'] for c in cookies]}"
        return values[-1]

    def close(self) -> None:
        self.context.close()
