"""The audit log: one line per sign-in, refusal, lockout and session, as `event key=value ...`.

It records who, from where, to which server, what kind of session and how it ended. It never
records commands, passwords, tokens or key material (a key appears only as its fingerprint).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+=-]+$")
LOGGER = "gpulab.ssh.audit"


def audit_line(event: str, **fields: object) -> str:
    parts = [event]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        parts.append(f"{key}={text if SAFE_VALUE.match(text) else json.dumps(text)}")
    return " ".join(parts)


class AuditLog:
    def __init__(self, path: str = ""):
        self.path = path
        self.logger = logging.getLogger(LOGGER)

    def open(self) -> None:
        """Also write the audit lines to `path` (mode 0600), besides the service log."""
        if not self.path:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).touch(mode=0o600)
        handler = logging.FileHandler(self.path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
        self.logger.addHandler(handler)
        self.logger.setLevel(logging.INFO)

    def __call__(self, event: str, **fields: object) -> None:
        self.logger.info(audit_line(event, **fields))
