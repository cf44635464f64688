"""Shared fixtures. Every hub here is real: `gpulab up` on random ports with a temp data dir.

Fixtures:
- `is_root`: whether the tests run as root (system accounts, setuid servers).
- `account_prefix` (session): a random system-account prefix (e.g. "t3f9a-") so parallel
  runs never share accounts; every account made with it is deleted at the end.
- `homes_root` (session): a folder other users can traverse, holding the test users' homes.
- `hubs_root` (session): a folder other users can traverse, holding the test hubs' data
  directories (services that run as their own accounts must reach their folders).
- `hub_defaults` (session): settings every test hub starts from (prefix, homes, project root, timeouts).
- `hub_factory`: starts hubs with `.start(settings)`; stops their servers and them after the test.
- `module_hub_factory` (module): the same, shared by a module's tests.
- `browser` (module): headless Debian chromium through Playwright (skips if missing).
  Playwright's sync API keeps an event loop running while it is open, so the fixture
  closes at the end of each module and browser tests live in modules without async tests.
- `container_engine` (session): Podman's Docker API on a Unix socket (`.url`, `.client()`), with
  gpulab's `base` and `cpu` images built from the committed Dockerfiles (cached; see
  tests/support/containers.py); `hub_image` adds the `hub` image. Stopped at the end.
- `projects_root` (session): a folder every account can pass through, to hold project roots
  (`projects.local.root`; hubs default to its "default" sub-folder, a module that creates
  projects uses its own root and `<account_prefix>p<id>-` group prefix); the projects' system
  groups (`<account_prefix>p*-*-rw|ro`) are deleted at the end.

Markers: `root` (skipped unless root), `browser` (skipped without /usr/bin/chromium).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gpulab.hub_config.services.service_account import MARKER as SERVICE_MARKER
from gpulab.hub_config.services.service_account import remove_service_account, service_account_name
from gpulab.spawner.accounts import MANAGED_MARKER, remove_account
from tests.support.hub import HubFactory

CHROMIUM = "/usr/bin/chromium"
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    skip_root = pytest.mark.skip(reason="needs root: creates system accounts and runs servers as them")
    skip_browser = pytest.mark.skip(reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip_root)
        if "browser" in item.keywords and not os.path.exists(CHROMIUM):
            item.add_marker(skip_browser)


@pytest.fixture(scope="session")
def is_root() -> bool:
    return IS_ROOT


@pytest.fixture(scope="session")
def account_prefix():
    prefix = f"t{secrets.token_hex(2)}-"
    yield prefix
    service_prefix = service_account_name(prefix, "")  # services' own accounts (MLflow's)
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix) and entry.pw_gecos == MANAGED_MARKER:
            subprocess.run(["pkill", "-KILL", "-u", entry.pw_name], capture_output=True)
            remove_account(entry.pw_name)
        elif entry.pw_name.startswith(service_prefix) and entry.pw_gecos == SERVICE_MARKER:
            subprocess.run(["pkill", "-KILL", "-u", entry.pw_name], capture_output=True)
            remove_service_account(entry.pw_name)


@pytest.fixture(scope="session")
def homes_root():
    root = Path(tempfile.mkdtemp(prefix="gpulab-test-homes-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_defaults(account_prefix, homes_root, projects_root) -> dict:
    return {
        "spawner": {
            "start_timeout": 90,
            "http_timeout": 120,  # a 2-core CI machine running four test files at once is slow to answer
            "local": {"account_prefix": account_prefix, "home_root": str(homes_root)},
        },
        "projects": {"local": {"root": str(projects_root / "default")}},
    }


@pytest.fixture(scope="session")
def hubs_root():
    """Where test hubs keep their data directories: a folder services' own accounts (MLflow's)
    may pass through, as they may a real install's. pytest's temporary root is private, and
    pytest closes it again (ACL mask included) whenever a session starts."""
    root = Path(tempfile.mkdtemp(prefix="gpulab-test-hubs-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hub_factory(hubs_root, hub_defaults):
    factory = HubFactory(Path(tempfile.mkdtemp(prefix="hubs-", dir=hubs_root)), hub_defaults)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def module_hub_factory(hubs_root, hub_defaults):
    factory = HubFactory(Path(tempfile.mkdtemp(prefix="module-hubs-", dir=hubs_root)), hub_defaults)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """kmock's emulated Kubernetes API with three nodes (tests/support/cluster.py), one per test module."""
    from tests.support.cluster import running_cluster

    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"needs {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def container_engine(account_prefix):
    from tests.support.containers import PodmanService, ensure_images, missing_engine

    reason = missing_engine()
    if reason:
        pytest.skip(reason)
    ensure_images(["base", "cpu"])
    folder = Path(tempfile.mkdtemp(prefix="gpulab-test-podman-", dir="/tmp"))
    service = PodmanService(folder).start()
    yield service
    service.remove_containers(f"gpulab-{account_prefix}")  # servers of this session's accounts a test left behind
    service.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_image(container_engine) -> str:
    from tests.support.containers import build_specs, ensure_images

    ensure_images(["hub"])
    return build_specs()["hub"].reference


@pytest.fixture(scope="session")
def projects_root(account_prefix):
    """A folder other users can pass through, for project roots (`projects_root / "mine"`); the
    projects' system groups (named after `account_prefix`) and the folder are removed at the end."""
    import grp
    import re

    root = Path(tempfile.mkdtemp(prefix="gpulab-test-projects-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    project_group = re.compile(rf"^{re.escape(account_prefix)}p[0-9a-z]*-.+-r[ow]$")
    for group in grp.getgrall():
        if project_group.match(group.gr_name):
            subprocess.run(["groupdel", group.gr_name], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
