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

from tests.support.fuzzing import send, service_fuzz
from tests.support.openapi import load_spec
from tests.support.projects import project_settings

SPEC = load_spec(Path(str(resources.files("gpulab.extensions.projects") / "openapi.yaml")))
POSITIVE_EXAMPLES = 8
NEGATIVE_EXAMPLES = 6


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    # Projects only: MLflow is not under test here.
    return module_hub_factory.start({**project_settings(projects_root, account_prefix, "z"),
                                     "mlflow": {"enabled": False}})


FUZZ = service_fuzz("projects", "fuzz-pat", SPEC, positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES)
token, base_url = FUZZ.token, FUZZ.base_url
test_valid_requests_get_described_responses = FUZZ.test_valid_requests_get_described_responses
test_invalid_requests_are_never_5xx = FUZZ.test_invalid_requests_are_never_5xx


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
