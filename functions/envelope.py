"""The API's JSON envelope, written in one place for successes, errors and the generic 500.

`{"success", "message", "data" | "error": {"code", "details"}, "request_id", "timestamp"}` — the
original API's shape, plus the request id to quote when reporting a problem.
"""

from __future__ import annotations

from typing import Any

from shared.context import iso_utc
from shared.errors import ServiceError

INTERNAL_ERROR_MESSAGE = "Internal error. Quote the request id when reporting it."


def envelope(request_id: str, message: str, *, data: Any = None, error: ServiceError | None = None) -> dict[str, Any]:
    """A success envelope carrying `data`, or, with `error`, the error envelope of that error."""
    body: dict[str, Any] = {"success": error is None, "message": message}
    if error is None:
        body["data"] = data
    else:
        body["error"] = {"code": error.code, "details": error.details}
    body["request_id"] = request_id
    body["timestamp"] = iso_utc()
    return body


def error_envelope(error: ServiceError, request_id: str) -> dict[str, Any]:
    return envelope(request_id, error.message, error=error)


def internal_error_envelope(request_id: str) -> dict[str, Any]:
    """The answer to a bug: nothing about the exception, only the request id to quote."""
    return envelope(request_id, INTERNAL_ERROR_MESSAGE, error=ServiceError(INTERNAL_ERROR_MESSAGE))
