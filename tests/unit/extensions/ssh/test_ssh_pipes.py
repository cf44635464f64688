"""The in-server session code (SessionRunner) behind a plain asyncssh server, driven by
OpenSSH's `ssh`: no hub, gateway or WebSocket, so a loss here is the endpoint's own (issue 14:
stdin's tail was lost when the command read late)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path

import asyncssh
import pytest

from gpulab.extensions.ssh.sessions import SessionRunner

pytestmark = pytest.mark.skipif(not Path("/usr/bin/ssh").exists(), reason="needs OpenSSH's client")


class OpenDoor(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # no sign-in: only this test's loopback client reaches it


async def serve(host_key: asyncssh.SSHKey) -> asyncssh.SSHAcceptor:
    return await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[host_key], server_factory=OpenDoor, config=None,
        process_factory=SessionRunner(dict(os.environ), logging.getLogger("test")),
        encoding=None, line_editor=False,
    )


async def ssh(port: int, folder: Path, command: str, data: bytes) -> tuple[int, bytes, bytes]:
    # stdin from a file: ssh may end before it read all of it (the command did not want it)
    (folder / "stdin").write_bytes(data)
    with open(folder / "stdin", "rb") as stdin:
        process = await asyncio.create_subprocess_exec(
            "ssh", "-F", "/dev/null", "-p", str(port), "-o", f"UserKnownHostsFile={folder / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "anyone@127.0.0.1", command, stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out, err


@pytest.fixture
def server(tmp_path):
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "known_hosts"

    def run(scenario):
        async def main():
            acceptor = await serve(host_key)
            port = acceptor.sockets[0].getsockname()[1]
            known.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
            try:
                return await scenario(lambda command, data=b"": ssh(port, tmp_path, command, data))
            finally:
                acceptor.close()
                await acceptor.wait_closed()
        return asyncio.run(main())

    return run


def test_a_command_that_reads_stdin_late_gets_every_byte(server):
    data = os.urandom(1_300_000)

    async def scenario(run):
        return [await run("sleep 0.5; sha256sum", data) for _ in range(5)]

    for status, out, err in server(scenario):
        assert status == 0, err
        assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_output_of_both_streams_arrives_whole_with_the_exit_status(server):
    async def scenario(run):
        return await run("head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2; exit 9")

    status, out, err = server(scenario)
    assert (status, len(out), len(err)) == (9, 3_000_000, 2_000_000)


def test_a_command_that_closes_stdin_early_ends_without_waiting_for_the_rest(server):
    async def scenario(run):
        return await run("head -c 5; exit 4", os.urandom(20_000_000))

    status, out, _ = server(scenario)
    assert status == 4 and len(out) == 5
