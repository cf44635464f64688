"""jupyter_lsp started at its first use (language_servers.py), side by side with stock jupyter_lsp.

Two real Jupyter servers of this environment, started the same way, with the same extensions and
the same PATH, one with gpulab's server extension. npm is a stand-in on PATH that records each
call and answers `prefix -g` with a folder where bash-language-server is installed (and `node` a
stand-in too): the language server is found only through npm's answer, as one a user installed
with `npm install -g`. Not covered: a real npm's own answer (the stand-in's is what jupyter_lsp
gets in both servers alike).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.hub import wait_for
from tests.support.ports import free_port_block
from tests.support.processes import terminate

TOKEN = "language-servers-test-token"
STAND_IN_NPM = """#!/bin/sh
echo "$@" >> {calls}
if [ "$1 $2" = "prefix -g" ]; then echo {prefix}; fi
"""


class Server:
    def __init__(self, root: Path, port: int, extensions: dict[str, bool]):
        self.root, self.url = root, f"http://127.0.0.1:{port}/"
        self.calls = root / "npm-calls"
        prefix = root / "npm-prefix"
        cli = prefix / "lib" / "node_modules" / "bash-language-server" / "out" / "cli.js"
        cli.parent.mkdir(parents=True)
        cli.write_text("")
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name, text in (("npm", STAND_IN_NPM.format(calls=self.calls, prefix=prefix)), ("node", "#!/bin/sh\n")):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(root / "home"),
               "JUPYTER_RUNTIME_DIR": str(root / "runtime"), "JUPYTER_DATA_DIR": str(root / "data")}
        (root / "home").mkdir()
        self.log = root / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1", "--no-browser", "--allow-root",
             f"--ServerApp.root_dir={root / 'home'}", f"--IdentityProvider.token={TOKEN}",
             f"--ServerApp.jpserver_extensions={extensions!r}"],
            cwd=root / "home", env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"token {TOKEN}"}, timeout=60)

    def answering(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return self.get("api/status").status_code == 200
        except requests.ConnectionError:
            return False

    def npm_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def stop(self) -> None:
        terminate(self.process)


@pytest.fixture
def servers(tmp_path):
    port = free_port_block(2)
    (tmp_path / "stock").mkdir()
    (tmp_path / "gpulab").mkdir()
    stock = Server(tmp_path / "stock", port, {})
    ours = Server(tmp_path / "gpulab", port + 1, {"gpulab.spawner.singleuser": True})
    try:
        wait_for(lambda: stock.answering() and ours.answering(), 120, "both Jupyter servers to answer")
        yield stock, ours
    finally:
        stock.stop()
        ours.stop()


def test_language_servers_are_found_at_the_first_request_for_them_as_stock_finds_them_at_start(servers):
    stock, ours = servers
    # stock jupyter_lsp asks npm as soon as its server runs, with no request for it
    wait_for(lambda: stock.npm_calls(), 60, "stock jupyter_lsp to run npm at its start")
    assert ours.get("api/contents").status_code == 200  # served after the start-up, as any request
    assert ours.npm_calls() == []

    stock_status, our_status = stock.get("lsp/status"), ours.get("lsp/status")
    assert stock_status.status_code == our_status.status_code == 200, our_status.text
    assert "bash-language-server" in stock_status.json()["sessions"]  # found through npm's answer
    assert our_status.json() == stock_status.json()
    assert ours.npm_calls() == stock.npm_calls() == ["prefix -g"]

    assert ours.get("lsp/status").json() == stock_status.json()
    assert ours.npm_calls() == ["prefix -g"]  # once, as jupyter_lsp does it


def test_waiters_at_once_share_one_initialization(servers):
    _, ours = servers
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: ours.get("lsp/status"), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json() == answers[0].json() for a in answers)
    assert ours.npm_calls() == ["prefix -g"]
