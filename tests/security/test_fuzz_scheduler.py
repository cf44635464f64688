"""Fuzzing the scheduler's REST API (schemathesis over extensions/scheduler/openapi.yaml).

A real hub and scheduler; requests go through the hub's proxy with an ordinary user's token.
Every operation gets valid requests (the response must be described, with a body that fits its
schema) and invalid ones (never a 5xx). Bounded: a few examples per operation, no example
database, so the whole module takes about a minute. Also the bodies and numbers that were
500s: 100,000 nested `[` and integers past 64 bits.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from tests.support.fuzzing import send, service_fuzz
from tests.support.openapi import load_spec

SPEC = load_spec(Path(str(resources.files("gpulab.extensions.scheduler") / "openapi.yaml")))
POSITIVE_EXAMPLES = 8
NEGATIVE_EXAMPLES = 6


def fuzzable(spec: dict) -> dict:
    """The document with notebooks narrowed to a few Markdown cells: generated runs then start a
    kernel but execute no generated code, which keeps the fuzzing bounded and harmless."""
    narrowed = json.loads(json.dumps(spec))
    cell = {"type": "object", "additionalProperties": False, "required": ["cell_type", "source", "metadata"],
            "properties": {"cell_type": {"const": "markdown"}, "source": {"type": "string", "maxLength": 40},
                           "metadata": {"type": "object", "maxProperties": 0}}}
    notebook = narrowed["components"]["schemas"]["Notebook"]
    notebook["properties"]["cells"] = {"type": "array", "maxItems": 3, "items": cell}
    notebook["properties"]["metadata"] = {"type": "object", "maxProperties": 0}
    notebook["additionalProperties"] = False
    return narrowed


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    # No MLflow (not under test); one run at a time, so generated runs queue instead of piling up.
    return module_hub_factory.start({"mlflow": {"enabled": False},
                                     "scheduler": {"max_concurrent_runs": 1, "max_runs_per_user": 1}})


FUZZ = service_fuzz("scheduler", "fuzz-fay", fuzzable(SPEC), positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES)
token, base_url = FUZZ.token, FUZZ.base_url
test_valid_requests_get_described_responses = FUZZ.test_valid_requests_get_described_responses
test_invalid_requests_are_never_5xx = FUZZ.test_invalid_requests_are_never_5xx


NOTEBOOK = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}


@pytest.mark.parametrize("method, path", [("POST", "/api/schedules"), ("POST", "/api/runs"),
                                          ("POST", "/runner/00000000-0000-0000-0000-000000000000/events")])
def test_deeply_nested_bodies_are_4xx(hub, token, method, path):
    status, body = send(base_url(hub), token, method, path, b"[" * 100_000)
    assert 400 <= status < 500, (status, body)
    status, body = send(base_url(hub), token, method, path, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert 400 <= status < 500, (status, body)


@pytest.mark.parametrize("field", ["timeout_seconds", "max_retries", "min_retry_interval_millis"])
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**400])
def test_integers_past_their_range_are_400_naming_the_field(hub, token, field, value):
    body = {"name": "big", "notebook": NOTEBOOK, "cron": "0 3 * * *", field: value}
    status, answer = send(base_url(hub), token, "POST", "/api/schedules", json.dumps(body).encode())
    assert status == 400 and field in answer["message"], (status, answer)


def test_ids_past_64_bits_are_404(hub, token):
    status, _ = send(base_url(hub), token, "DELETE", f"/api/runs/{2**63}", b"")
    assert status == 404
