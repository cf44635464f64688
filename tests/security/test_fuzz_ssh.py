"""Fuzzing the SSH keys REST API (schemathesis over extensions/ssh/openapi.yaml).

A real hub and SSH service; requests go through the hub's proxy with an ordinary user's
token. Every operation gets valid requests (the response must be described, with a body that
fits its schema) and invalid ones (never a 5xx). Bounded: a few dozen examples per operation,
no example database (well under 90 s). Also the inputs that were 500s (issue 12, finding 10):
100,000 nested `[` and key ids past 64 bits.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from tests.support.fuzzing import send, service_fuzz
from tests.support.openapi import load_spec

SPEC = Path(str(resources.files("gpulab.extensions.ssh") / "openapi.yaml"))
POSITIVE_EXAMPLES = 30
NEGATIVE_EXAMPLES = 20


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    return module_hub_factory.start({"mlflow": {"enabled": False}, "scheduler": {"enabled": False}})


FUZZ = service_fuzz("ssh", "fuzz-sam", load_spec(SPEC), positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES,
                    takes_input=lambda o: o.path != "/api/openapi.yaml")
token, base_url = FUZZ.token, FUZZ.base_url
test_valid_requests_get_described_responses = FUZZ.test_valid_requests_get_described_responses
test_invalid_requests_are_never_5xx = FUZZ.test_invalid_requests_are_never_5xx


def test_deeply_nested_bodies_are_4xx(hub, token):
    for body in (b"[" * 100_000, b'{"public_key": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        status, answer = send(base_url(hub), token, "POST", "/api/keys", body)
        assert 400 <= status < 500, (status, answer)
        assert answer["message"]


@pytest.mark.parametrize("key_id", ["9223372036854775808", "2147483648", "0", "-1", "1e3", "%C2%B2", "x" * 300])
def test_key_ids_that_name_no_key_are_404(hub, token, key_id):
    status, answer = send(base_url(hub), token, "DELETE", f"/api/keys/{key_id}")
    assert status == 404, (status, answer)
    assert "no SSH key with id" in answer["message"]
