"""Fuzzing the projects REST API (schemathesis over extensions/projects/openapi.yaml).

A real hub and projects service; requests go through the hub's proxy with an ordinary user's
token (a user who may create projects, so creation, membership and sharing paths are reached).
Every operation gets valid requests (the response must be described, with a body that fits its
schema) and invalid ones (never a 5xx). Bounded: a few examples per operation and no example
database, so the module takes about a minute. Also the bodies that were 500s (issue 12
finding 10): 100,000 nested `[`, a body over 1 MiB, and look-alikes of reserved names.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import schemathesis

from tests.support.fuzzing import check_invalid, check_valid, send
from tests.support.openapi import load_spec
from tests.support.projects import project_settings

SPEC = load_spec(Path(str(resources.files("gpulab.extensions.projects") / "openapi.yaml")))
SCHEMA = schemathesis.openapi.from_dict(SPEC)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]  # (an Err fails the import, as it should)
POSITIVE_EXAMPLES = 8
NEGATIVE_EXAMPLES = 6


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    # Projects only: MLflow is not under test here.
    return module_hub_factory.start({**project_settings(projects_root, account_prefix, "z"),
                                     "mlflow": {"enabled": False}})


@pytest.fixture(scope="module")
def token(hub) -> str:
    hub.create_user("fuzz-pat")
    return hub.user_token("fuzz-pat")


def base_url(hub) -> str:
    return hub.url.rstrip("/") + "/services/projects"


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.label)
def test_valid_requests_get_described_responses(hub, token, operation):
    check_valid(operation, base_url(hub), token, POSITIVE_EXAMPLES)


@pytest.mark.parametrize("operation", [o for o in OPERATIONS if o.method.upper() != "GET"], ids=lambda o: o.label)
def test_invalid_requests_are_never_5xx(hub, token, operation):
    check_invalid(operation, base_url(hub), token, NEGATIVE_EXAMPLES)


@pytest.mark.parametrize("body, status, needle", [
    (b"[" * 100_000, 400, "nests deeper than 64 levels"),
    (b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nests deeper than 64 levels"),
    (json.dumps({"name": "big", "description": "x" * (1 << 20)}).encode(), 413, "at most 1048576"),
    (json.dumps({"name": "\uff41\uff50\uff49"}).encode(), 400, "'api' is reserved"),
    (json.dumps({"name": "admin\u00a0"}).encode(), 400, "'admin' is reserved"),
])
def test_hostile_bodies_are_4xx_with_a_message(hub, token, body, status, needle):
    answer = send(base_url(hub), token, "POST", "/api/projects", body)
    assert (answer[0], needle in answer[1].get("message", "")) == (status, True), answer
