"""Calls a service's REST API and checks every response against the service's OpenAPI document.

Each response's status must be described for its operation, and its JSON body must validate
against the described schema (OpenAPI 3.1 schemas are JSON Schema 2020-12). What was seen
is recorded, so a test can also check that every described response was exercised.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
from ruamel.yaml import YAML


def load_spec(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def operations(spec: dict) -> set[tuple[str, str, str]]:
    """Every (method, path template, status) the document describes."""
    found = set()
    for template, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                found |= {(method.upper(), template, status) for status in operation["responses"]}
    return found


def _pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


@dataclass
class CheckedApi:
    spec: dict
    base_url: str  # the service's address, e.g. http://127.0.0.1:8000/services/projects
    seen: set = field(default_factory=set)

    def template(self, path: str) -> str:
        matches = [t for t in self.spec["paths"] if _pattern(t).match(path.split("?")[0])]
        assert matches, f"{path} is not described in the OpenAPI document"
        return max(matches, key=lambda t: t.count("/"))

    def call(self, method: str, path: str, token: str | None = None, body=None, raw: bytes | None = None):
        """(status, decoded JSON body or None); fails the test if the response is not as described."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"token {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload, content_type = response.status, response.read(), response.headers["Content-Type"]
        except urllib.error.HTTPError as error:
            status, payload, content_type = error.code, error.read(), error.headers["Content-Type"]
        template = self.template(path)
        operation = self.spec["paths"][template][method.lower()]
        described = operation["responses"].get(str(status))
        assert described is not None, f"{method} {template} answered {status}, which is not described: {payload[:300]!r}"
        self.seen.add((method, template, str(status)))
        if "$ref" in described:
            described = self._resolve(described["$ref"])
        content = described.get("content", {})
        if not content:
            assert not payload, f"{method} {template} {status} should have no body, got {payload[:200]!r}"
            return status, None
        if "application/json" not in content:
            return status, payload
        assert content_type.startswith("application/json"), content_type
        decoded = json.loads(payload)
        schema = content["application/json"]["schema"]
        jsonschema.validate(decoded, {**schema, "components": self.spec["components"]},
                            cls=jsonschema.Draft202012Validator)
        return status, decoded

    def _resolve(self, ref: str) -> dict:
        node = self.spec
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node
