"""Bounds on what MLflow parses: JSON nesting and GraphQL depth.

Python's JSON decoder and graphql-core's parser recurse once per level, so 100,000 `[` in a
body, or a query nested as deep, end in RecursionError inside MLflow: a 500. These checks
run before MLflow sees the request and answer 400 with a message. They scan brackets
outside strings, linearly, without building anything.
"""

from __future__ import annotations

import json
import re

from gpulab.hub_config.services.limits import MAX_JSON_DEPTH, json_too_deep

# MAX_JSON_DEPTH (64) suits MLflow too: its own payloads nest under 10, OTLP trace JSON under 20.
MAX_GRAPHQL_DEPTH = 32  # MLflow itself refuses selections deeper than 10, after parsing
# Raw bytes, never parsed as JSON: artifact uploads (proxied PUTs and the UI's upload-artifact).
UNPARSED_BODIES = re.compile(r"/mlflow-artifacts/artifacts/|/upload-artifact$")

_GRAPHQL_TOKENS = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}()\[\]]', re.DOTALL)


def depth_exceeds(tokens, opening, closing, limit: int) -> bool:
    depth = 0
    for token in tokens:
        text = token.group()
        if text in opening:
            depth += 1
            if depth > limit:
                return True
        elif text in closing:
            depth -= 1
    return False


def graphql_problem(body: dict | None, limit: int = MAX_GRAPHQL_DEPTH) -> str | None:
    """Why a GraphQL request cannot be run (None: hand it to MLflow)."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return 'a GraphQL request is a JSON object with a "query" string'
    query = body["query"]
    if depth_exceeds(_GRAPHQL_TOKENS.finditer(query), ("{", "(", "["), ("}", ")", "]"), limit):
        return f"the GraphQL query nests deeper than {limit} levels"
    from graphql import GraphQLError, parse

    try:
        parse(query)
    except GraphQLError as exc:
        return f"the GraphQL query does not parse: {exc.message}"
    return None


def json_error(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


def limit_json_depth(app, limit: int = MAX_JSON_DEPTH):
    """ASGI wrapper: a request body nested deeper than `limit` is a 400 before MLflow parses it.

    Reads the whole body of requests that carry one (MLflow's Flask side buffers it anyway)
    and hands MLflow the same bytes; artifact uploads stream through untouched.
    """

    async def guarded(scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS") \
                or UNPARSED_BODIES.search(scope["path"]):
            await app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_too_deep(body, limit):
            payload = json_error("INVALID_PARAMETER_VALUE", f"the JSON body nests deeper than {limit} levels")
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await app(scope, replay, send)

    return guarded
