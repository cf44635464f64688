"""proxy.kind: configurable-http-proxy, the proxy JupyterHub ships by default (from npm)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess

import psutil
import pytest

from gpulab.hub_config.services.service_account import service_account_name
from tests.support.hub import GPULAB, process_uids, wait_for


CHP_BIN = os.environ.get("GPULAB_TEST_CHP_BIN", "")


@pytest.mark.skipif(not CHP_BIN, reason="configurable-http-proxy is not installed (./test.sh installs it with npm)")
def test_spawn_through_configurable_http_proxy(hub_factory):
    hub = hub_factory.start({"proxy": {"kind": "configurable-http-proxy"}},
                            extra_env={"PATH": CHP_BIN + os.pathsep + os.environ["PATH"]})
    hub.create_user("carl")
    hub.spawn("carl")
    assert "started" in hub.api.request("GET", "user/carl/api/status")
    assert "configurable-http-proxy" in hub.log_tail(400).lower()
    if os.geteuid() == 0:  # not root's: the proxy's own account, as traefik's (issue 12)
        pid = int((hub.data_dir / "proxy" / "chp.pid").read_text())
        account = pwd.getpwnam(service_account_name(hub.settings["spawner"]["local"]["account_prefix"], "proxy"))
        assert process_uids(pid) == [str(account.pw_uid)] * 4
        assert "configurable-http-proxy" in " ".join(psutil.Process(pid).cmdline())
        # JupyterHub's supervision still works: a killed CHP is started again, as the account
        os.kill(pid, signal.SIGKILL)
        pid_file = hub.data_dir / "proxy" / "chp.pid"  # gone for a moment while JupyterHub restarts CHP
        wait_for(lambda: _pid_in(pid_file) not in ("", str(pid)), 30, f"the hub to start CHP again\n{hub.log_tail()}")
        again = int((hub.data_dir / "proxy" / "chp.pid").read_text())
        assert process_uids(again) == [str(account.pw_uid)] * 4
        wait_for(lambda: _answers(hub, "carl"), 30, "carl's server through the new CHP")


def _pid_in(path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _answers(hub, user: str) -> bool:
    try:
        return "started" in hub.api.request("GET", f"user/{user}/api/status")
    except Exception:  # noqa: BLE001 - the proxy is still coming back
        return False


def test_a_missing_proxy_program_stops_start_up_with_what_to_do(tmp_path):
    (tmp_path / "gpulab.yaml").write_text("proxy:\n  kind: configurable-http-proxy\n")
    path = ":".join(p for p in os.environ["PATH"].split(":") if not CHP_BIN or p != CHP_BIN)
    result = subprocess.run([GPULAB, "up"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 1
    assert "npm install -g configurable-http-proxy" in result.stderr
