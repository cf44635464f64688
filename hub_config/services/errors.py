"""Errors a core class raises; handlers turn them into HTTP statuses in one place (web.py)."""


class ServiceError(Exception):
    """A request that cannot be served as asked; `message` is shown to the caller."""

    status = 400

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class Invalid(ServiceError):
    status = 400


class NotAllowed(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409
