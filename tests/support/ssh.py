"""Stock OpenSSH clients (ssh, scp, sftp, rsync) pointed at a test hub's SSH gateway.

Each client trusts exactly the gateway's host key (a known_hosts file built from the
key in the hub's data directory, StrictHostKeyChecking=yes) and uses only the key it is
given (IdentitiesOnly, no agent, no ~/.ssh/config).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .hub import RunningHub, wait_for


def make_key(folder: Path, name: str) -> Path:
    """A fresh ed25519 key pair; returns the private key's path (the .pub is beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def gateway_host_key(hub: RunningHub) -> str:
    public = hub.data_dir / "ssh" / "ssh_host_ed25519_key.pub"
    return wait_for(lambda: public.exists() and public.read_text().strip(), 30, "the gateway's host key")


def known_hosts(hub: RunningHub, port: int, folder: Path) -> Path:
    path = folder / "known_hosts"
    path.write_text(f"[127.0.0.1]:{port} {gateway_host_key(hub)}\n")
    return path


@dataclass
class OpenSSH:
    port: int
    known_hosts: Path
    key: Path | None = None
    source: str = ""  # a loopback address to connect from, e.g. 127.0.0.2
    timeout: float = 120

    def options(self, extra: tuple[str, ...] = ()) -> list[str]:
        options = ["-F", "/dev/null", "-o", f"UserKnownHostsFile={self.known_hosts}",
                   "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"]
        if self.key is not None:
            options += ["-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                        "-o", "BatchMode=yes"]
        if self.source:
            options += ["-o", f"BindAddress={self.source}"]
        return options + list(extra)

    def ssh_command(self, login: str, *args: str, extra: tuple[str, ...] = ()) -> list[str]:
        return ["ssh", "-p", str(self.port), *self.options(extra), f"{login}@127.0.0.1", *args]

    def ssh(self, login: str, command: str | None = None, *, extra: tuple[str, ...] = (),
            env: dict | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
        args = [command] if command is not None else []
        return subprocess.run(self.ssh_command(login, *args, extra=extra), capture_output=True,
                              timeout=self.timeout, env=env, input=input if input is not None else b"")

    def scp(self, *paths: str, legacy: bool = False) -> subprocess.CompletedProcess:
        command = ["scp", "-P", str(self.port), *(["-O"] if legacy else []), *self.options(), *paths]
        return subprocess.run(command, capture_output=True, timeout=self.timeout)

    def sftp(self, login: str, batch: str) -> subprocess.CompletedProcess:
        command = ["sftp", "-P", str(self.port), *self.options(), "-b", "-", f"{login}@127.0.0.1"]
        return subprocess.run(command, capture_output=True, timeout=self.timeout, input=batch.encode())

    def rsync(self, source: str, destination: str) -> subprocess.CompletedProcess:
        remote_shell = shlex.join(["ssh", "-p", str(self.port), *self.options()])
        return subprocess.run(["rsync", "-a", "-e", remote_shell, source, destination], capture_output=True,
                              timeout=self.timeout)


def askpass_environment(folder: Path, password: str) -> dict:
    """An environment in which ssh reads `password` from an askpass program (no terminal needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "password"
    secret.write_text(password)
    program = folder / "askpass.sh"
    program.write_text(f"#!/bin/sh\ncat {shlex.quote(str(secret))}\n")
    program.chmod(0o700)
    return {**os.environ, "SSH_ASKPASS": str(program), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
