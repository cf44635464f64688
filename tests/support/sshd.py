"""Debian's OpenSSH server (/usr/sbin/sshd) on a loopback port, the reference gpulab's SSH is
compared with: its own host key and sshd_config, one account allowed, the test's key as its
only authorized key. Started as root so it can switch to that account (the same system
account a user's gpulab server runs as), with `UsePAM no`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .hub import wait_for
from .ports import free_port_block
from .processes import terminate
from .ssh import OpenSSH

SSHD = "/usr/sbin/sshd"


def sshd_config(port: int, folder: Path, account: str) -> str:
    """The whole configuration (pure): nothing read from /etc/ssh."""
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {folder / 'ssh_host_ed25519_key'}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "StrictModes no",  # the key file is root's, in a test folder
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"AllowUsers {account}",
        "Subsystem sftp internal-sftp",
        "AcceptEnv LANG LC_*",
        "LogLevel VERBOSE",  # to its own log file
        "",
    ])


@dataclass
class ReferenceSSHD:
    port: int
    account: str
    process: subprocess.Popen
    client: OpenSSH

    folder: Path

    def stop(self) -> None:
        terminate(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def unlock_for_keys(account: str) -> None:
    """Without PAM, sshd refuses accounts whose password is locked ("!", useradd's default);
    "*" still allows no password but lets a key in, as on any server."""
    subprocess.run(["usermod", "-p", "*", account], check=True, capture_output=True)


def start_sshd(account: str, public_key: Path, private_key: Path) -> ReferenceSSHD:
    # Its own folder under /tmp: sshd reads authorized_keys as the account, which cannot
    # pass through pytest's private temp folders.
    folder = Path(tempfile.mkdtemp(prefix="gpulab-sshd-"))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    host_key = folder / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True, capture_output=True)
    shutil.copy(public_key, folder / "authorized_keys")
    (folder / "authorized_keys").chmod(0o644)
    folder.chmod(0o755)
    unlock_for_keys(account)
    port = free_port_block(1)
    config = folder / "sshd_config"
    config.write_text(sshd_config(port, folder, account))
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(folder / "sshd.log", "wb"))
    try:
        wait_for(lambda: process.poll() is not None or _listening(port), 30, "sshd to listen")
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
    except BaseException:
        process.kill()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.with_suffix('.pub').read_text().strip()}\n")
    return ReferenceSSHD(port, account, process, OpenSSH(port, known, private_key), folder)
