"""The API's JSON envelope, written in one place for successes and failures.

`{"success", "message", "data" | "error": {"code", "details"}, "request_id", "timestamp"}` — the
original API's shape, plus the request id to quote when reporting a problem. A failure arrives as the
invocation pipeline's `Failure` (functions/invocation.py), the generic 500 included.
"""

from __future__ import annotations

from typing import Any

from functions.invocation import INTERNAL_ERROR_MESSAGE, Failure
from shared.context import iso_utc

__all__ = ["INTERNAL_ERROR_MESSAGE", "envelope", "error_envelope"]


def envelope(request_id: str, message: str, *, data: Any = None, failure: Failure | None = None) -> dict[str, Any]:
    """A success envelope carrying `data`, or, with `failure`, the error envelope of that failure."""
    body: dict[str, Any] = {"success": failure is None, "message": message}
    if failure is None:
        body["data"] = data
    else:
        body["error"] = {"code": failure.code, "details": failure.details}
    body["request_id"] = request_id
    body["timestamp"] = iso_utc()
    return body


def error_envelope(failure: Failure, request_id: str) -> dict[str, Any]:
    return envelope(request_id, failure.message, failure=failure)
