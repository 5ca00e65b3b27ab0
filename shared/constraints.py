"""The constrained types of the API contract: limits, id and text patterns, metadata rules, instants.

Each rule is written once, as a pydantic type the models in shared/contract.py use; the same
types give the OpenAPI document its patterns, lengths and key rules, so validator and document agree.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
)

# Limits that are part of the contract (documented in the OpenAPI document).
MAX_USER_ID = 128
MAX_CONTENT = 8_000
MAX_QUERY = 2_000
MAX_METADATA_KEYS = 32
MAX_METADATA_KEY = 64
MAX_METADATA_STRING = 2_000
MAX_SEARCH_LIMIT = 100
MAX_LIST_LIMIT = 1_000  # the most memories one page of a list or an export holds

# The character rules, written once as regexes in the dialect JSON Schema and the validators share, so
# that /openapi.json declares exactly what is refused (a generated request never finds a difference).
# What str.strip() removes, spelled out (ECMA's and Rust's `\s` differ from Python's on U+0085/U+FEFF).
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CONTROL = r"\x00-\x1f\x7f"
_BLANK = r"\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # _SPACE less the controls
# Ids: no control characters, and something besides spaces (they are stripped).
ID_PATTERN = rf"^[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*$"
# User ids also hold no space inside: mem0 refuses them (spaces around are stripped).
USER_ID_PATTERN = rf"^[{_BLANK}]*[^{_CONTROL}{_SPACE}]+[{_BLANK}]*$"
# Texts: anything, as long as something is not a space.
TEXT_PATTERN = rf"[^{_SPACE}]"
# Metadata keys: 1-64 characters, none a control character (C0, DEL, C1) or line/paragraph separator.
# (A lone surrogate, which no store can write as UTF-8, is refused in any string by functions/http.py.)
_KEY_CHARS = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
METADATA_KEY_PATTERN = rf"^{_KEY_CHARS}{{1,{MAX_METADATA_KEY}}}$"
# A list's cursor: 24 bytes in URL-safe base64 (shared/memory/listing.py), so every string of this form is one.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{32}$"
# What each pattern means, for the 422 details (the pattern itself is in /openapi.json).
PATTERN_RULES = {
    CURSOR_PATTERN: "must be a next_cursor as a list or an export answered it",
    ID_PATTERN: "must hold something besides spaces and no control characters",
    USER_ID_PATTERN: "must hold no control characters and no space inside (spaces around are stripped)",
    TEXT_PATTERN: "must not be blank",
}
_METADATA_KEY = re.compile(rf"{_KEY_CHARS}{{1,{MAX_METADATA_KEY}}}")

# mem0 keeps metadata beside its own fields in the stored payload; these names are its own.
RESERVED_METADATA_KEYS = frozenset(
    {
        "data",
        "hash",
        "created_at",
        "updated_at",
        "id",
        "text_lemmatized",
        "attributed_to",
        "user_id",
        "agent_id",
        "run_id",
        "actor_id",
        "role",
        "expiration_date",
        "score",
        "memory",
        "metadata",
        "seq",
        # Derived by the vector-store adapters (shared/stores/vector/port.py).
        "_seq",
        "_ts",
        "_day",
        "_month",
        "_speaker",
        "_expires",
        "_mortal",
        "_valid_until",
        "_ended",
        "_tenant",
        # The validity of a memory (issue 22): set by the service, shown on every memory object.
        "valid_from",
        "valid_until",
        "superseded_by",
        "supersedes",
        "_norm",
        "_scope",
    }
)


def _stripped(value: str) -> str:
    return value.strip()


# Ids: the length and pattern are checked on the string as sent (what the schema describes), then it
# is stripped: " alice " is alice.
UserId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_USER_ID, pattern=USER_ID_PATTERN),
    AfterValidator(_stripped),
    Field(description="The user whose memories are addressed; every operation is scoped to it.", examples=["alice"]),
]
ScopeId = Annotated[
    str | None,
    Field(min_length=1, max_length=MAX_USER_ID, pattern=USER_ID_PATTERN),
    AfterValidator(lambda v: _stripped(v) if v is not None else v),
    Field(
        description="mem0's agent or run scope: stored with a memory, and narrowing search, list and delete-all.",
        examples=["support-bot"],
    ),
]
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_CONTENT, pattern=TEXT_PATTERN),
    Field(examples=["I prefer Python over JavaScript for backend work."]),
]
Query = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_QUERY, pattern=TEXT_PATTERN),
    Field(examples=["Which language does the user prefer?"]),
]
MemoryId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN), AfterValidator(_stripped)]
SessionId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN), AfterValidator(_stripped)]


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer is a number without a fraction, so 5.0 is one; "5" and true are not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict: a JSON number is a number and a JSON boolean a boolean (no "5" for 5, no true for 1).
Limit = Annotated[int, BeforeValidator(_json_integer), Field(strict=True)]
_LIST_LIMIT_TEXT = f"How many memories at most (1-{MAX_LIST_LIMIT}; default LIST_PAGE_SIZE, 100)."
ListLimit = Annotated[
    Limit,
    Field(ge=1, le=MAX_LIST_LIMIT),
    # written out: pydantic describes the bounds of an optional one by their Python names (ge, le)
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "description": _LIST_LIMIT_TEXT}),
]
Cursor = Annotated[
    str,
    StringConstraints(pattern=CURSOR_PATTERN),
    Field(
        description="Where the page starts: the `next_cursor` of the previous page (absent: the newest memories).",
        examples=["AAAAAAAAAGRBw3i0j0BGm6qlbVgNcVEC"],
    ),
]
MetadataValue = (
    Annotated[str, StringConstraints(max_length=MAX_METADATA_STRING)]
    | Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(strict=True)]
    | Annotated[float, Field(strict=True)]
)
_RESERVED_LIST: list[JsonValue] = list(sorted(RESERVED_METADATA_KEYS))
_METADATA_KEYS_SCHEMA: dict[str, JsonValue] = {
    "maxProperties": MAX_METADATA_KEYS,
    "propertyNames": {"pattern": METADATA_KEY_PATTERN, "not": {"enum": _RESERVED_LIST}},
}


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys")
    for key in value:
        if not _METADATA_KEY.fullmatch(key):
            raise ValueError(
                f"metadata key {key[:80]!r} must be 1-{MAX_METADATA_KEY} characters without control characters"
            )
        if key in RESERVED_METADATA_KEYS:
            raise ValueError(f"metadata key {key!r} is reserved")
    return value


Metadata = Annotated[
    dict[str, MetadataValue] | None,
    AfterValidator(_check_metadata),
    Field(
        description="Flat key/value metadata (strings, numbers, booleans). `category` feeds the stats. At most "
        f"{MAX_METADATA_KEYS} keys of 1-{MAX_METADATA_KEY} characters, none a control character or a reserved name.",
        examples=[{"category": "preferences", "topic": "programming", "confidence": 0.9}],
        json_schema_extra=_METADATA_KEYS_SCHEMA,
    ),
]

# RFC 3339 date-time, as JSON Schema's `format: date-time` means it; read here rather than by pydantic,
# whose lax reading also takes numbers and dates without a time, and whose strict one refuses strings.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):  # built in Python (JSON has no such value)
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    found = _RFC3339.fullmatch(value)
    if found is None:
        raise ValueError("must be an RFC 3339 date-time, e.g. 2024-05-01T12:00:00Z")
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    fraction = (found.group(7) or ".")[1:7].ljust(6, "0")
    zone = found.group(8)
    offset = 0 if zone in ("Z", "z") else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 60 + int(zone[4:6]))
    from datetime import timedelta, timezone

    try:
        tz = timezone(timedelta(minutes=offset))
        # A leap second (:60) is the last instant of its minute; year 0000 is before datetime's range.
        return datetime(max(year, 1), month, day, hour, minute, min(second, 59), int(fraction), tzinfo=tz)
    except ValueError as error:
        raise ValueError(f"is not a valid date-time: {error}") from None


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _uuid_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a memory id (a UUID string)")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError("must be a memory id (a UUID)") from None


# A memory's id where it must name one (`supersedes`): a UUID, compared in its canonical form.
MemoryUuid = Annotated[str, BeforeValidator(_uuid_text), WithJsonSchema({"type": "string", "format": "uuid"})]


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _expiration(value: Any) -> date | datetime | None:
    """A JSON string only: a date (the memory lives through that day) or an RFC 3339 instant."""
    if value is None or isinstance(value, date):  # built in Python (JSON has no such value)
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value
    if not isinstance(value, str):
        raise ValueError("must be a date (2026-12-31) or an RFC 3339 date-time string (2026-12-31T18:00:00Z)")
    if len(value) == 10:
        try:
            return date.fromisoformat("0001" + value[4:] if value.startswith("0000") else value)
        except ValueError:
            raise ValueError("must be a valid date, e.g. 2026-12-31") from None
    return _instant(value)


ExpirationDate = Annotated[
    datetime | date | None,
    BeforeValidator(_expiration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
                {"type": "null"},
            ]
        }
    ),
    Field(
        description=(
            "When the memory expires (UTC): a date (`2026-12-31`, the memory lives through that day, as in mem0) "
            "or an RFC 3339 instant (`2026-12-31T18:00:00Z`). An expired memory is never returned "
            "and is purged with its history by the `memory_purge_expired` timer."
        ),
        examples=["2026-12-31"],
    ),
]
