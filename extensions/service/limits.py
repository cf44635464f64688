"""Bounds on the JSON bodies gpulab's services parse (pure).

Python's json module recurses once per nesting level, so 100,000 `[` end in RecursionError:
a 500. Bodies are checked for size and depth before they are parsed.
"""

from __future__ import annotations

import re

MAX_JSON_BODY = 1 << 20  # 1 MiB: gpulab's requests are a few hundred bytes; a runner's error report a few KB
MAX_JSON_DEPTH = 64  # gpulab's own models nest under 5; notebook parameters may hold a little JSON

# A whole string (so brackets inside strings are not counted) or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` opens more than `limit` arrays or objects inside each other."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case, without scanning
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False
