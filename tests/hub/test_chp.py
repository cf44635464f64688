"""proxy.kind: configurable-http-proxy, the proxy JupyterHub ships by default (from npm)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.hub import GPULAB

CHP_BIN = os.environ.get("GPULAB_TEST_CHP_BIN", "")


@pytest.mark.skipif(not CHP_BIN, reason="configurable-http-proxy is not installed (./test.sh installs it with npm)")
def test_spawn_through_configurable_http_proxy(hub_factory):
    hub = hub_factory.start({"proxy": {"kind": "configurable-http-proxy"}},
                            extra_env={"PATH": CHP_BIN + os.pathsep + os.environ["PATH"]})
    hub.create_user("carl")
    hub.spawn("carl")
    assert "started" in hub.api.request("GET", "user/carl/api/status")
    assert "configurable-http-proxy" in hub.log_tail(400).lower()


def test_a_missing_proxy_program_stops_start_up_with_what_to_do(tmp_path):
    (tmp_path / "gpulab.yaml").write_text("proxy:\n  kind: configurable-http-proxy\n")
    path = ":".join(p for p in os.environ["PATH"].split(":") if not CHP_BIN or p != CHP_BIN)
    result = subprocess.run([GPULAB, "up"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 1
    assert "npm install -g configurable-http-proxy" in result.stderr
