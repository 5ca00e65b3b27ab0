"""The API contract as pydantic models: requests are validated against these, responses built from
them, and `/openapi.json` is generated from them, so the three cannot drift apart."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
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
# Keys a search filter may name: every store engine reads them as a plain field name (Qdrant's
# JSON paths give `.`, `[`, quotes and spaces a meaning; Chroma's `$` prefixes are operators).
FILTER_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
MAX_METADATA_STRING = 2_000
MAX_SEARCH_LIMIT = 100

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
# What each pattern means, for the 422 details (the pattern itself is in /openapi.json).
PATTERN_RULES = {
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
        "_month",
        "_speaker",
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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


# --- requests -------------------------------------------------------------------------------
class ChatMessageRequest(StrictModel):
    user_id: UserId
    message: Content
    session_id: SessionId | None = Field(
        None, description="Conversation to continue; a new one is created when absent."
    )
    metadata: dict[str, Any] | None = Field(None, description="Free-form metadata about the message.")


class ChatSearchRequest(StrictModel):
    user_id: UserId
    query: Query
    limit: Limit = Field(5, ge=1, le=MAX_SEARCH_LIMIT)


class SearchFilters(StrictModel):
    """Narrows a search; all conditions must hold."""

    metadata: dict[str, MetadataValue] | None = Field(
        None,
        description="Exact matches on metadata keys; a key is letters, digits, '_' and '-' (not first), at most "
        f"{MAX_METADATA_KEY}, and not a reserved name.",
        json_schema_extra={
            "maxProperties": MAX_METADATA_KEYS,
            "propertyNames": {"pattern": f"^{FILTER_KEY.pattern}$", "not": {"enum": _RESERVED_LIST}},
        },
    )
    categories: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        None, max_length=50, description="Memories whose `metadata.category` is one of these."
    )
    created_after: Instant | None = Field(None, description="Only memories created at or after this instant.")
    created_before: Instant | None = Field(None, description="Only memories created before this instant.")

    def to_store_filters(self) -> dict[str, Any]:
        store: dict[str, Any] = {}
        for key, value in (self.metadata or {}).items():
            store[key] = value
        if self.categories:
            store["category"] = {"in": list(self.categories)}
        return store


class MemorySearchRequest(StrictModel):
    user_id: UserId
    query: Query
    limit: Limit = Field(10, ge=1, le=MAX_SEARCH_LIMIT)
    threshold: Annotated[float, Field(strict=True)] | None = Field(
        None, ge=0.0, le=1.0, description="Drop results scoring below this."
    )
    filters: SearchFilters | None = None

    def model_post_init(self, _: Any) -> None:
        if self.filters and self.filters.metadata:
            _check_metadata(dict(self.filters.metadata))
            for key in self.filters.metadata:
                if not FILTER_KEY.fullmatch(key):
                    raise ValueError(
                        f"filters.metadata key {key[:80]!r} cannot be filtered on: filter keys are letters, digits, "
                        "'_' and '-' (not starting with '-')"
                    )


class MemoryInput(StrictModel):
    content: Content
    metadata: Metadata = None


class MemoryAddRequest(StrictModel):
    user_id: UserId
    content: Content
    metadata: Metadata = None


class MemoryBatchAddRequest(StrictModel):
    user_id: UserId
    memories: list[MemoryInput] = Field(..., min_length=1)


class MemoryUpdateRequest(StrictModel):
    memory_id: MemoryId
    content: Content
    metadata: Metadata = None
    user_id: UserId | None = Field(None, description="When given, the memory must belong to this user (else 403).")


# --- responses ------------------------------------------------------------------------------
class MemoryRecord(BaseModel):
    id: str
    memory: str = Field(description="The memory text.")
    user_id: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    score: float | None = Field(None, description="Relevance, on search results only.")


class MemoryList(BaseModel):
    results: list[MemoryRecord]
    total: int


class MemoryResults(BaseModel):
    results: list[MemoryRecord]
    relations: list[dict[str, Any]] | None = Field(
        None, description="Graph relations relevant to the query (present when graph memory is on)."
    )
    warnings: list[dict[str, str]] | None = Field(
        None, description="Degraded parts of the answer, e.g. `graph_unavailable` while Neo4j is down."
    )


class UserGraph(BaseModel):
    user_id: str
    enabled: bool = Field(description="False when graph memory is off (GRAPH_STORE=none).")
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    truncated: bool = False


class AddedMemory(BaseModel):
    memory_id: str
    user_id: str
    content: str


class BatchAdded(BaseModel):
    memory_ids: list[str]
    count: int


class UpdatedMemory(BaseModel):
    memory_id: str
    content: str


class DeletedMemory(BaseModel):
    memory_id: str


class DeletedCount(BaseModel):
    deleted: int


class MemoryStats(BaseModel):
    user_id: str
    total_memories: int
    date_distribution: dict[str, int]
    category_distribution: dict[str, int]


class HistoryEntry(BaseModel):
    id: str | None = None
    memory_id: str
    old_memory: str | None = None
    new_memory: str | None = None
    event: str
    created_at: str | None = None
    updated_at: str | None = None
    is_deleted: bool = False


class MemoryHistory(BaseModel):
    memory_id: str
    history: list[HistoryEntry]


class ExportedTurn(BaseModel):
    user_message: str
    assistant_message: str
    timestamp: str
    memories_used: list[str]


class UserExport(BaseModel):
    user_id: str
    exported_at: str
    memories: list[dict[str, Any]] = Field(description="Every memory with its metadata and change history.")
    sessions: dict[str, list[ExportedTurn]] = Field(description="Chat sessions by id, turns oldest first.")
    graph: dict[str, Any] | None = Field(None, description="The user's graph (nodes, edges) when graph memory is on.")


class ChatMessageResponse(BaseModel):
    response: str
    user_id: str
    session_id: str
    memories_used: list[str]
    timestamp: str


class HealthResponse(BaseModel):
    status: str = Field(description="`healthy`, or `degraded` when a configured dependency does not answer.")
    timestamp: float
    version: str
    checks: dict[str, dict[str, Any]] | None = Field(
        None, description="Per-dependency checks: on `/health/detail` only (function key)."
    )


class MetricsResponse(BaseModel):
    active_connections: int
    total_requests: int
    timestamp: float
    total_errors: int = 0
    uptime_seconds: float = 0.0
    functions: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ServiceInfo(BaseModel):
    name: str
    version: str
    description: str
    docs: str
    openapi: str
    health: str


DataT = TypeVar("DataT")


class Envelope(BaseModel, Generic[DataT]):
    success: bool = True
    message: str
    data: DataT
    timestamp: str
    request_id: str | None = None


class ErrorInfo(BaseModel):
    code: str = Field(examples=["validation_error"])
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorEnvelope(BaseModel):
    success: bool = False
    message: str
    error: ErrorInfo
    request_id: str
    timestamp: str


# --- path and query parameters --------------------------------------------------------------
class UserPath(BaseModel):
    user_id: UserId


class OwnerQuery(BaseModel):
    user_id: UserId | None = None
