"""Domain errors. Adapters translate them into their protocol's error shape (HTTP 4xx JSON, SIP 4xx)."""

from __future__ import annotations

import re

_PAIR = re.compile(r"^(?P<zh>.*[\u4e00-\u9fff].*?) / (?P<en>[^\u4e00-\u9fff]+)$", re.S)


def pick(message: str | None, lang: str = "zh-CN") -> str | None:
    """The half of a bilingual message ("中文说明 / English text", the convention of these errors and of stored
    details such as access alerts) for lang; a message that is not such a pair is returned as it is."""
    if not message:
        return message
    m = _PAIR.match(message)
    if m is None:
        return message
    return m["en"].strip() if lang.startswith("en") else m["zh"].strip()


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
