"""Bounds on the JSON bodies gpulab's services parse (pure).

Python's json module recurses once per nesting level, so 100,000 `[` end in RecursionError:
a 500. Bodies are checked for size and depth before they are parsed.
"""

from __future__ import annotations

import re

MAX_JSON_BODY = 1 << 20  # 1 MiB: gpulab's requests are a few hundred bytes; a runner's error report a few KB
MAX_JSON_DEPTH = 64  # gpulab's own models nest under 5; notebook parameters may hold a little JSON

_QUOTED = re.compile(rb'"[^"]*"')
_NOT_BRACKETS_OR_QUOTES = bytes(c for c in range(256) if c not in b'[]{}"')


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` opens more than `limit` arrays or objects inside each other (brackets in
    strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case, without a scan
    # In C: escaped backslashes, then escaped quotes out (so every quote left delimits a
    # string), then all but brackets and quotes, then the strings; one pass over what is left.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = _QUOTED.sub(b"", unescaped.translate(None, _NOT_BRACKETS_OR_QUOTES))
    depth = 0
    for byte in brackets:
        if byte in (91, 123):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
