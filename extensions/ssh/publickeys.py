"""Public keys users register: parsed and checked at the edge, identified by fingerprint."""

from __future__ import annotations

from dataclasses import dataclass

import asyncssh
from cryptography.hazmat.primitives.asymmetric import rsa

from gpulab.hub_config.services.errors import Invalid

MIN_RSA_BITS = 2048
ACCEPTED_TYPES = (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)
MAX_COMMENT = 200


@dataclass(frozen=True)
class PublicKey:
    algorithm: str
    openssh: str  # "type base64", without the comment
    fingerprint: str  # SHA256:...
    comment: str


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def parse_public_key(text: str, comment: str = "") -> PublicKey:
    """One OpenSSH public key line (as in id_ed25519.pub). Raises Invalid with the reason.

    The message never repeats the text: a private key pasted by mistake must not be echoed.
    """
    text = text.strip()
    if "PRIVATE KEY" in text:
        raise Invalid("that is a private key: add the public key (the .pub file) and keep the private key secret")
    if not text:
        raise Invalid("public_key is empty: paste one line such as the content of ~/.ssh/id_ed25519.pub")
    if "\n" in text:
        raise Invalid("public_key must be exactly one key (one line)")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError):
        raise Invalid("public_key is not an OpenSSH public key (expected e.g. \"ssh-ed25519 AAAA... you@laptop\")") from None
    algorithm = key.get_algorithm()
    if algorithm not in ACCEPTED_TYPES:
        raise Invalid(f"{algorithm} keys are not accepted; use ssh-ed25519 (ssh-keygen -t ed25519)")
    if algorithm == "ssh-rsa" and isinstance(key.pyca_key, rsa.RSAPublicKey) and key.pyca_key.key_size < MIN_RSA_BITS:
        raise Invalid(f"RSA keys need at least {MIN_RSA_BITS} bits; this one has {key.pyca_key.key_size}")
    parts = text.split(None, 2)
    own_comment = (comment or (parts[2] if len(parts) > 2 else "")).strip()[:MAX_COMMENT]
    openssh = key.export_public_key("openssh").decode().split()[:2]
    return PublicKey(algorithm, " ".join(openssh), fingerprint(key), own_comment)
