"""Fuzzing a gpulab service's REST API with schemathesis against a real hub.

`check_valid` sends generated valid requests (each response must be described: status, content
type and body schema); `check_invalid` sends invalid ones (never a 5xx). No example database and
few examples per operation, so a module stays around a minute. `send` posts raw bytes (hostile
bodies schemathesis would not generate). `service_fuzz` gives a service's module the fixture and
the two tests every service's API gets.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from schemathesis.generation import GenerationMode

FUZZ = settings(deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))
DESCRIBED = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
             checks.response_schema_conformance]


def _fuzz(operation, mode: GenerationMode, base_url: str, token: str, examples: int, required: list) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(case=operation.as_strategy(mode))
    def call(case):
        response = case.call(base_url=base_url, headers={"Authorization": f"token {token}"}, timeout=30)
        case.validate_response(response, checks=required)

    call()


def check_valid(operation, base_url: str, token: str, examples: int) -> None:
    _fuzz(operation, GenerationMode.POSITIVE, base_url, token, examples, DESCRIBED)


def check_invalid(operation, base_url: str, token: str, examples: int) -> None:
    _fuzz(operation, GenerationMode.NEGATIVE, base_url, token, examples, [checks.not_a_server_error])


def send(base_url: str, token: str, method: str, path: str, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base_url + path, data=data, method=method,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def takes_a_body_or_query(operation) -> bool:
    return operation.method.upper() != "GET"


def service_fuzz(service: str, user: str, spec: dict, positive: int, negative: int,
                 takes_input: Callable = takes_a_body_or_query) -> SimpleNamespace:
    """What every service's fuzz module shares, for it to bind at module level (pytest collects
    them there): `token` (a module fixture: an ordinary user's token), `base_url(hub)`, the
    `operations` of `spec`, and the two tests over them: valid requests get described responses,
    and invalid ones (for the operations `takes_input` picks) are never a 5xx."""
    operations = [result.ok() for result in schemathesis.openapi.from_dict(spec).get_all_operations()]  # type: ignore[union-attr]  # (an Err fails the import, as it should)

    def base_url(hub) -> str:
        return hub.url.rstrip("/") + f"/services/{service}"

    @pytest.fixture(scope="module")
    def token(hub) -> str:
        hub.create_user(user)
        return hub.user_token(user)

    @pytest.mark.parametrize("operation", operations, ids=lambda o: o.label)
    def test_valid_requests_get_described_responses(hub, token, operation):
        check_valid(operation, base_url(hub), token, positive)

    @pytest.mark.parametrize("operation", [o for o in operations if takes_input(o)], ids=lambda o: o.label)
    def test_invalid_requests_are_never_5xx(hub, token, operation):
        check_invalid(operation, base_url(hub), token, negative)

    return SimpleNamespace(operations=operations, base_url=base_url, token=token,
                           test_valid_requests_get_described_responses=test_valid_requests_get_described_responses,
                           test_invalid_requests_are_never_5xx=test_invalid_requests_are_never_5xx)
