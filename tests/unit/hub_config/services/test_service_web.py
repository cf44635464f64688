"""The JSON edge every gpulab service shares (hub_config/services/web.py): size and nesting
limits turn hostile bodies into a 4xx with a message, never a 500. A real tornado app."""

from __future__ import annotations

import json

from pydantic import BaseModel
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application

from gpulab.hub_config.services.limits import MAX_JSON_BODY, json_too_deep
from gpulab.hub_config.services.web import ApiHandler


class Echo(BaseModel):
    value: object = None


class EchoApi(ApiHandler):
    def post(self):
        self.write_json(self.body_as(Echo))


class NotebookApi(EchoApi):
    max_json_body = 4 << 20


class BodyLimits(AsyncHTTPTestCase):
    def get_app(self):
        return Application([("/echo", EchoApi), ("/notebooks", NotebookApi)])

    def post(self, body: bytes) -> tuple[int, dict]:
        response = self.fetch("/echo", method="POST", body=body, headers={"Authorization": "token x"})
        return response.code, json.loads(response.body)

    def test_deep_nesting_is_a_400_not_a_recursion_error(self):
        status, error = self.post(b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        assert (status, error["message"]) == (400, "the request body nests deeper than 64 levels")
        status, error = self.post(b"[" * 100_000)  # unbalanced too
        assert status == 400

    def test_nesting_within_the_limit_and_brackets_in_strings_are_fine(self):
        body = b'{"value": ' + b"[" * 60 + b"]" * 60 + b"}"
        assert self.post(body) == (200, json.loads(body))
        text = "[" * 5000 + '\\"{'
        assert self.post(json.dumps({"value": text}).encode()) == (200, {"value": text})

    def test_a_body_over_a_mebibyte_is_a_413(self):
        status, error = self.post(json.dumps({"value": "x" * MAX_JSON_BODY}).encode())
        assert status == 413 and "at most 1048576" in error["message"]

    def test_an_api_that_takes_notebooks_raises_its_limit(self):
        """A notebook with saved outputs is often over 1 MiB: the scheduler takes up to 32 MiB."""
        from gpulab.extensions.scheduler.api import SchedulerApi

        body = json.dumps({"value": "x" * (2 << 20)}).encode()
        response = self.fetch("/notebooks", method="POST", body=body, headers={"Authorization": "token x"})
        assert response.code == 200
        assert SchedulerApi.max_json_body >= 32 << 20

    def test_malformed_json_is_a_400(self):
        assert self.post(b'{"value": ')[0] == 400


def test_depth_counts_only_brackets_outside_strings():
    assert not json_too_deep(b'["' + b"[" * 100 + b'"]', limit=2)
    assert json_too_deep(b"[[[", limit=2)
    assert not json_too_deep(b"[[]]", limit=2)
