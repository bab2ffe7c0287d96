"""Domain errors. Adapters translate them into their protocol's error shape (HTTP 4xx JSON, SIP 4xx)."""

from __future__ import annotations


class AnfangError(Exception):
    """Base of all domain errors; carries a user-facing message (zh-CN first)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ValidationError(AnfangError):
    status = 422
    code = "invalid"


class NotFound(AnfangError):
    status = 404
    code = "not_found"


class Conflict(AnfangError):
    status = 409
    code = "conflict"


class Unauthorized(AnfangError):
    status = 401
    code = "unauthorized"


class Forbidden(AnfangError):
    status = 403
    code = "forbidden"
