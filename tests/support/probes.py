"""Whether a URL answers 200 with a token, polled while something restarts."""

from __future__ import annotations

import urllib.error
import urllib.request

from tests.support.hub import ADMIN_TOKEN


def answers(url: str, token: str = ADMIN_TOKEN) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
