"""Request handlers for gpulab services: who is asking (hub token or OAuth cookie), bodies
validated at the edge, and one error path that turns every failure into a 4xx with a message
(JSON for the API, a hub-looking page for browsers)."""

from __future__ import annotations

import json
import sys
from typing import Any, TypeVar

from jupyterhub.services.auth import HubOAuthenticated
from pydantic import BaseModel, ValidationError
from tornado import web

from .errors import ServiceError
from .limits import MAX_JSON_BODY, MAX_JSON_DEPTH, json_too_deep

Model = TypeVar("Model", bound=BaseModel)


def validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class ServiceHandler(HubOAuthenticated, web.RequestHandler):
    """Base of every handler: identity from the hub, errors mapped in one place."""

    json_errors = False

    @property
    def user_model(self) -> dict:
        """The signed-in hub user (name, groups, scopes, admin); 403 if there is none."""
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "authentication required: send a hub API token or sign in")
        if user.get("kind") == "service":
            raise web.HTTPError(403, "services cannot act as users here")
        return user

    @property
    def user_name(self) -> str:
        return self.user_model["name"]

    def _handle_request_exception(self, e: BaseException) -> None:
        # Core classes raise ServiceError subclasses and pydantic raises ValidationError:
        # both are the caller's mistake, so a 4xx with the message, never a 500.
        if isinstance(e, (ServiceError, ValidationError)):
            if not self._finished:
                self.send_error(e.status if isinstance(e, ServiceError) else 400, exc_info=sys.exc_info())
            return
        super()._handle_request_exception(e)

    def error_message(self, status_code: int, exc: BaseException | None) -> str:
        if isinstance(exc, ServiceError):
            return exc.message
        if isinstance(exc, ValidationError):
            return validation_message(exc)
        if isinstance(exc, web.HTTPError) and exc.log_message:
            return exc.log_message % exc.args if exc.args else exc.log_message
        return self._reason

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self.error_message(status_code, exc)
        if status_code >= 500:
            message = "internal error; the service log has the details"
        if self.json_errors:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "message": message}))
        else:
            self.finish(self.settings["gpulab_pages"].render(self, "error.html", status_code=status_code, message=message))


class ApiHandler(ServiceHandler):
    """JSON in, JSON out."""

    json_errors = True

    def check_xsrf_cookie(self) -> None:
        # Token requests need no XSRF check; cookie requests from pages send X-XSRFToken.
        if self.request.headers.get("Authorization"):
            return
        super().check_xsrf_cookie()

    # The largest JSON body this API reads; an API that takes notebooks raises it.
    max_json_body = MAX_JSON_BODY

    def body_as(self, model: type[Model]) -> Model:
        """The request body validated against `model`; 400 naming the field otherwise (413 too big)."""
        body = self.request.body or b"{}"
        if len(body) > self.max_json_body:
            raise web.HTTPError(413, f"the request body has {len(body)} bytes; at most {self.max_json_body} are accepted")
        if json_too_deep(body):
            raise web.HTTPError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise web.HTTPError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return model.model_validate(data)

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if isinstance(value, BaseModel):
            text = value.model_dump_json()
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            text = "[" + ",".join(v.model_dump_json() for v in value) + "]"
        else:
            text = json.dumps(value, default=str)
        self.finish(text)


class PageHandler(ServiceHandler):
    """An HTML page in the hub's look; unauthenticated visitors are sent to sign in."""

    def render_page(self, template: str, **context: Any) -> None:
        self.finish(self.settings["gpulab_pages"].render(self, template, **context))
