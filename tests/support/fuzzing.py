"""Fuzzing a gpulab service's REST API with schemathesis against a real hub.

`check_valid` sends generated valid requests (each response must be described: status, content
type and body schema); `check_invalid` sends invalid ones (never a 5xx). No example database and
few examples per operation, so a module stays around a minute. `send` posts raw bytes (hostile
bodies schemathesis would not generate).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

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
