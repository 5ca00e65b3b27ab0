"""What a call carries with it: its request id, and the one clock every timestamp is read from.

Every timestamp the API returns or the service stores is rendered by `iso_utc`: ISO 8601 in UTC
with milliseconds and a `Z` (`2024-01-01T10:00:00.000Z`), the form of the original API's examples.
Timestamps written by others (mem0 stamps US/Pacific offsets, older rows carry `+00:00`) are
rendered in that form too when they are returned (`as_iso_utc`).
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_request_id(incoming: str | None = None) -> str:
    """Reuse a caller's (or APIM's) request id when it is sane, else make one."""
    if incoming and 8 <= len(incoming) <= 128 and incoming.isascii() and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """The clock."""
    return datetime.now(UTC)


def iso_utc(moment: datetime | None = None) -> str:
    """`moment` (default: now) as `YYYY-MM-DDTHH:MM:SS.mmmZ`; a naive datetime is taken as UTC."""
    moment = moment or utc_now()
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def as_iso_utc(value: str | None) -> str | None:
    """A stored ISO timestamp in the API's form; anything that is not one is returned unchanged."""
    if not value:
        return value
    try:
        return iso_utc(datetime.fromisoformat(value))
    except (TypeError, ValueError):
        return value


class RequestIdLogFilter(logging.Filter):
    """Stamps every log record with the request id of the call that produced it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
