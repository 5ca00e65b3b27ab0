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
from datetime import UTC, date, datetime

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


def expiration_text(value: date | None) -> str | None:
    """An `expiration_date` as stored: `YYYY-MM-DD` for a date, ISO UTC with `Z` for an instant."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def utc_day(timestamp: str) -> str:
    """The UTC day (`YYYY-MM-DD`) of a stored timestamp, for counts by day."""
    if not timestamp:
        return "unknown"
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp[:10]
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d")


class RequestIdLogFilter(logging.Filter):
    """Stamps every log record with the request id of the call that produced it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
