"""Who trusts whom: the gateway's host key, and the keys of each server's SSH endpoint.

The gateway's host key is generated once and kept in the data directory (mode 0600), so
users' known_hosts stay valid across restarts.

Each user server's endpoint gets a seed from the spawner (one environment variable),
derived from a master secret that only the hub and the gateway can read. From the seed the
endpoint derives its SSH host key and the password it expects from the gateway; the gateway
derives the same from the master secret. So the gateway knows which host key the real
server of alice/gpu must present (nobody else, another user's process included, can pose
as it), and only the gateway can open an SSH session on the endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

import asyncssh
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

SEED_VARIABLE = "GPULAB_SSH_ENDPOINT_SEED"
# AES-GCM runs on the CPU's AES instructions through `cryptography`; asyncssh's ChaCha20 is
# several times slower, and every byte is encrypted twice (client-gateway, gateway-server).
FAST_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr"]
# Between gateway and endpoint: bigger packets and windows, so fewer, larger messages cross
# the WebSocket (both ends are asyncssh).
INNER_WINDOW = 8 * 1024 * 1024
INNER_PACKET = 256 * 1024
MASTER_SECRET_BYTES = 32


def _publish_once(path: Path, content: bytes, mode: int) -> bytes:
    """Write `content` to `path` unless it exists; return what the file holds.

    The hub and the gateway may both create it at start-up: the file appears complete or
    not at all (written aside, then linked into place), and the loser reads the winner's.
    The file belongs to the folder's owner: when the hub (root) writes the master secret
    first, the gateway's account, which owns the folder, must still read it.
    """
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            folder = os.stat(path.parent)
            if os.geteuid() == 0 and folder.st_uid != 0:
                os.fchown(out.fileno(), folder.st_uid, folder.st_gid)
            out.write(content)
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_bytes()


def master_secret(path: Path) -> bytes:
    """The secret every endpoint seed is derived from, created on first use (mode 0600)."""
    return bytes.fromhex(_publish_once(path, secrets.token_hex(MASTER_SECRET_BYTES).encode(), 0o600).decode())


def gateway_host_key(path: Path) -> asyncssh.SSHKey:
    """The gateway's host key (ed25519), created on first use; its public half goes beside it."""
    pem = _publish_once(path, _openssh_pem(Ed25519PrivateKey.generate()), 0o600)
    key = asyncssh.import_private_key(pem)
    public = Path(f"{path}.pub")
    if not public.exists():
        _publish_once(public, key.export_public_key("openssh"), 0o644)
    return key


def _openssh_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())


# ---------------------------------------------------------------- per-server endpoint keys


def endpoint_seed(master: bytes, owner: str, server_name: str) -> str:
    """The seed handed to the server `owner`/`server_name` ("" is the default server)."""
    message = b"gpulab-ssh-endpoint " + json.dumps([owner, server_name]).encode()  # unambiguous for any names
    return hmac.new(master, message, hashlib.sha256).hexdigest()


def _derive(seed: str, purpose: bytes) -> bytes:
    return hmac.new(bytes.fromhex(seed), purpose, hashlib.sha256).digest()


def endpoint_host_key(seed: str) -> asyncssh.SSHKey:
    """The endpoint's SSH host key (private), the same wherever the seed is known."""
    return asyncssh.import_private_key(_openssh_pem(Ed25519PrivateKey.from_private_bytes(_derive(seed, b"host-key"))))


def endpoint_password(seed: str) -> str:
    """What the gateway sends as its password to the endpoint."""
    return _derive(seed, b"gateway-password").hex()


class EndpointSeed:
    """`c.Spawner.environment` value: the seed of the server being spawned.

    Called by the spawner at each start (so the master secret is read then, not when the
    configuration is built).
    """

    def __init__(self, master_secret_file: str):
        self.master_secret_file = master_secret_file

    def __call__(self, spawner) -> str:
        return endpoint_seed(master_secret(Path(self.master_secret_file)), spawner.user.name, spawner.name or "")

    def __repr__(self) -> str:
        return f"EndpointSeed({self.master_secret_file!r})"
