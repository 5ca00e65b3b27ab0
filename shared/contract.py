"""The API contract as pydantic models: requests are validated against these, responses built from
them, and `/openapi.json` is generated from them, so the three cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StrictBool,
    StringConstraints,
    field_validator,
    model_serializer,
)

from shared.constraints import (
    MAX_SEARCH_LIMIT as MAX_SEARCH_LIMIT,
)
from shared.constraints import (
    RESERVED_METADATA_KEYS as RESERVED_METADATA_KEYS,
)
from shared.constraints import (
    Content,
    Cursor,
    ExpirationDate,
    Instant,
    Limit,
    ListLimit,
    MemoryId,
    MemoryUuid,
    Metadata,
    Query,
    ScopeId,
    SessionId,
    UserId,
    _epoch,
)
from shared.query.filters import Condition, Validity, all_of
from shared.query.filters import parse as parse_filter


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

    metadata: dict[str, Any] | None = Field(
        None,
        description=(
            'Conditions on metadata keys, mem0\'s grammar: `{"key": value}` is equality; '
            '`{"key": {"eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin"|"contains": operand}}` '
            "compares (`gt`..`lte` numbers; `in`/`nin` lists; `contains` a substring of a string); "
            '`{"AND"|"OR"|"NOT": [condition, ...]}` combines (NOT: none of them holds). Several keys '
            "in one object must all hold. Anything else is a 422 naming its path."
        ),
        examples=[{"OR": [{"category": "food"}, {"confidence": {"gte": 0.8}}], "NOT": [{"topic": {"in": ["x", "y"]}}]}],
    )
    categories: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        None, max_length=50, description="Memories whose `metadata.category` is one of these."
    )
    created_after: Instant | None = Field(None, description="Only memories created at or after this instant.")
    created_before: Instant | None = Field(None, description="Only memories created before this instant.")
    _parsed: Any = PrivateAttr(default=None)
    _scope: dict[str, str] = PrivateAttr(default_factory=dict)
    _validity: Validity = PrivateAttr(default_factory=Validity.current)

    @field_validator("metadata")
    @classmethod
    def _grammar(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            parse_filter(value, reserved=RESERVED_METADATA_KEYS)
        return value

    def model_post_init(self, _: Any) -> None:
        if self.metadata is not None:
            self._parsed = parse_filter(self.metadata, reserved=RESERVED_METADATA_KEYS)

    def scoped(self, agent_id: str | None = None, run_id: str | None = None) -> SearchFilters:
        """These filters narrowed to an agent and/or a run (mem0's scopes beside the user)."""
        copy = self.model_copy()
        copy._parsed = self._parsed
        copy._scope = {**self._scope, **{k: v for k, v in (("agent_id", agent_id), ("run_id", run_id)) if v}}
        copy._validity = self._validity
        return copy

    def at(self, validity: Validity) -> SearchFilters:
        """These filters reading the memories of `validity` (shared/query/filters.py; default: valid now)."""
        copy = self.scoped()
        copy._validity = validity
        return copy

    @property
    def validity(self) -> Validity:
        return self._validity

    def scope_ids(self) -> dict[str, str]:
        """The agent and run scopes these filters are narrowed to (`scoped`)."""
        return dict(self._scope)

    def condition(self) -> Condition | None:
        """Everything these filters ask, as one tree (shared/query/filters.py) for the engines."""
        from shared.query.filters import Compare

        parts: list[Condition | None] = [self._parsed]
        if self.categories:
            parts.append(Compare("category", "in", tuple(self.categories)))
        if self.created_after is not None:
            parts.append(Compare("_ts", "gte", _epoch(self.created_after)))
        if self.created_before is not None:
            parts.append(Compare("_ts", "lt", _epoch(self.created_before)))
        parts.extend(Compare(key, "eq", value) for key, value in sorted(self._scope.items()))
        return all_of(*parts)


def scope_filters(
    agent_id: str | None,
    run_id: str | None,
    filters: SearchFilters | None = None,
    validity: Validity | None = None,
) -> SearchFilters | None:
    """`filters` narrowed to the agent and run scopes given and reading `validity` (None when nothing
    narrows and the validity is the default, valid now)."""
    if validity is not None and not validity.is_current:
        filters = (filters or SearchFilters()).at(validity)
    if not agent_id and not run_id:
        return filters
    return (filters or SearchFilters()).scoped(agent_id, run_id)


AS_OF = "What was true at this instant (RFC 3339): memories created by then and not yet superseded."
INCLUDE_SUPERSEDED = "Also superseded and invalidated memories (with their validity); wins over `as_of`."


class ValidityQuery(BaseModel):
    """`?as_of=&include_superseded=` on list (and the fields of the same names on search)."""

    as_of: Instant | None = Field(None, description=AS_OF)
    include_superseded: Annotated[bool, Field(strict=True)] = Field(False, description=INCLUDE_SUPERSEDED)

    def validity(self) -> Validity:
        return Validity.of_request(_epoch(self.as_of) if self.as_of else None, self.include_superseded)


class MemorySearchRequest(StrictModel):
    user_id: UserId
    agent_id: ScopeId = None
    run_id: ScopeId = None
    query: Query
    limit: Limit = Field(10, ge=1, le=MAX_SEARCH_LIMIT)
    threshold: Annotated[float, Field(strict=True)] | None = Field(
        None, ge=0.0, le=1.0, description="Drop results scoring below this."
    )
    filters: SearchFilters | None = None
    as_of: Instant | None = Field(None, description=AS_OF)
    include_superseded: Annotated[bool, Field(strict=True)] = Field(False, description=INCLUDE_SUPERSEDED)

    def validity(self) -> Validity:
        return Validity.of_request(_epoch(self.as_of) if self.as_of else None, self.include_superseded)


Supersedes = Annotated[
    list[MemoryUuid] | None,
    Field(min_length=1, max_length=100, description="Ids of the user's current memories this one replaces."),
]


class MemoryInput(StrictModel):
    content: Content
    metadata: Metadata = None
    expiration_date: ExpirationDate = None
    supersedes: Supersedes = None


ALLOW_DUPLICATES = Field(
    False, description="Store even a duplicate of a current memory of the scope (same normalized text or near-equal)."
)


class MemoryAddRequest(StrictModel):
    user_id: UserId
    agent_id: ScopeId = None
    run_id: ScopeId = None
    content: Content
    metadata: Metadata = None
    expiration_date: ExpirationDate = None
    supersedes: Supersedes = None
    allow_duplicates: StrictBool = ALLOW_DUPLICATES
    infer: StrictBool = Field(
        False,
        description="When true, the model extracts the facts `content` states (in its language) and reconciles "
        "them with the user's current memories: each is added, supersedes or invalidates memories, or is "
        "already known (`facts` in the answer). Two model calls; needs an LLM. Default false: stored as given.",
    )


class MemoryBatchAddRequest(StrictModel):
    user_id: UserId
    agent_id: ScopeId = Field(None, description="The agent every memory of the batch belongs to.")
    run_id: ScopeId = Field(None, description="The run (session) every memory of the batch belongs to.")
    memories: list[MemoryInput] = Field(..., min_length=1)
    allow_duplicates: StrictBool = ALLOW_DUPLICATES


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
    agent_id: str | None = Field(None, description="The agent scope, when the memory has one.")
    run_id: str | None = Field(None, description="The run scope, when the memory has one.")
    expiration_date: str | None = Field(None, description="When the memory expires, as it was given (UTC).")
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    valid_from: str | None = Field(None, description="Since when the memory is true (its `created_at` unless set).")
    valid_until: str | None = Field(None, description="Until when it was true: set once superseded or invalidated.")
    superseded_by: str | None = Field(None, description="The id of the memory that replaced it.")
    supersedes: list[str] | None = Field(None, description="The ids of the memories it replaced.")
    score: float | None = Field(None, description="Relevance, on search results only.")


class Paged(BaseModel):
    """An answer that is one page of a user's memories: `next_cursor` is always written, null on the last page."""

    next_cursor: str | None = Field(
        None,
        description="The `cursor` of the next page (older memories); null when this page is the last.",
    )

    # No return annotation on purpose: with one, pydantic would describe the answer by it, not by the fields.
    @model_serializer(mode="wrap")
    def _with_cursor(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict):
            data["next_cursor"] = self.next_cursor  # also when the envelope leaves out the other nulls
        return data


class MemoryList(Paged):
    results: list[MemoryRecord] = Field(description="The page's memories, newest first.")
    total: int = Field(description="How many memories this page holds (the user's count is in the stats).")


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


class LearnedFact(BaseModel):
    fact: str
    event: Literal["ADD", "SUPERSEDE", "INVALIDATE", "NONE"]
    memory_id: str | None = Field(None, description="The memory the fact is stored as (ADD, SUPERSEDE).")
    ids: list[str] = Field(default_factory=list, description="The memories it superseded or invalidated.")


class AddedMemory(BaseModel):
    memory_id: str = Field(
        ..., description="The memory stored. With `infer`: the first fact's memory, empty when none was stored."
    )
    user_id: str
    content: str
    duplicate: bool | None = Field(None, description="True: not stored again; `memory_id` is the existing memory's.")
    facts: list[LearnedFact] | None = Field(None, description="With `infer`: what was learned, fact by fact.")


class BatchAdded(BaseModel):
    memory_ids: list[str]
    count: int
    duplicate: list[bool] | None = Field(
        None, description="Per item, when any is: true when its id is an existing one's."
    )


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


class UserExport(Paged):
    user_id: str
    exported_at: str
    memories: list[dict[str, Any]] = Field(
        description="A page of the memories (newest first), each with its metadata and change history."
    )
    sessions: dict[str, list[ExportedTurn]] = Field(
        description="Chat sessions by id, turns oldest first: on the first page (no `cursor`), else empty."
    )
    graph: dict[str, Any] | None = Field(
        None, description="The user's graph (nodes, edges) when graph memory is on: on the first page only."
    )


class EventAccepted(BaseModel):
    event_id: str
    status: str = Field(
        description="`queued` on the queue; `succeeded` (or `failed`) when run inline; `cancelled` when the user "
        "was erased while the work ran (nothing of it was kept, and the event no longer exists)."
    )


class IngestEventInfo(BaseModel):
    event_id: str
    status: str = Field(
        description="`queued`, `processing`, `succeeded` or `failed` (an event whose user is erased is deleted: "
        "404; work of it under way ends `cancelled` and keeps nothing)."
    )
    memory_ids: list[str] | None = Field(None, description="The memories written, once the event succeeded.")
    error: str | None = Field(None, description="Why the event failed (or why its last attempt did).")
    created_at: str
    updated_at: str


class ChatMessageResponse(BaseModel):
    response: str
    user_id: str
    session_id: str
    memories_used: list[str]
    timestamp: str
    learning: EventAccepted | None = Field(
        None, description="The turn's learning (memory extraction, graph) as an event; poll /api/memory/events/{id}."
    )


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
    queues: dict[str, dict[str, int]] | None = Field(
        None, description="Per ingestion queue: `backlog` and `poison`, approximate message counts (queue mode)."
    )


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


class MemoryRef(StrictModel):
    """One memory addressed on behalf of its owner (the MCP tools get_memory and delete_memory)."""

    memory_id: MemoryId
    user_id: UserId


class ScopeQuery(BaseModel):
    """`?agent_id=&run_id=` on list and delete-all."""

    agent_id: ScopeId = None
    run_id: ScopeId = None


class PageQuery(BaseModel):
    """`?limit=&cursor=` on list and export."""

    limit: ListLimit | None = None
    cursor: Cursor | None = None


class MemoryListRequest(ValidityQuery, StrictModel):
    """A page of a user's memories, of the agent and run scopes given (the MCP tool list_memories)."""

    user_id: UserId
    agent_id: ScopeId = None
    run_id: ScopeId = None
    limit: ListLimit | None = None
    cursor: Cursor | None = None
