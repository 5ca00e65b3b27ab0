"""Graph memory on Neo4j: the entities a user talks about and the typed relations between them.

mem0 2.x has no graph store, so this module is the whole graph layer, on the official `neo4j`
driver (any Neo4j 5: Community, Enterprise or Aura, tested on 5.26; no APOC, no GDS, no plugin at all).

API — what the rest of the service calls (one `GraphStore` per worker, built by `build_graph_store`)
---------------------------------------------------------------------------------------------------
    build_graph_store(settings, embedder, llm) -> GraphStore | None    # None when GRAPH_STORE=none; no I/O

    store.extract_and_store(user_id, text, memory_ids) -> GraphWriteResult
        One LLM call (JSON mode) extracts entities/relations from `text`, then one Neo4j transaction
        merges them into the user's graph, tagged with `memory_ids` (the memories learned from the same
        text). Malformed LLM output -> status "rejected", logged, nothing written. Neo4j down ->
        raises GraphUnavailable (a 503 BackendUnavailable) *before* the LLM is called when possible.
    store.revert_write(user_id, result) -> None          # undo one write (a chat turn that failed later)
    store.search(user_id, query, limit=10, *, vector=None) -> list[dict]  # relevant relations; raises GraphUnavailable
    store.search_safe(user_id, query, limit=10, *, vector=None) -> GraphReadResult(relations, warning)  # never raises
    store.user_graph(user_id, *, include_history=False) -> {"nodes": [...], "edges": [...], "truncated": bool}
    store.delete_memory(user_id, memory_id) -> int       # relations removed (those only that memory supported)
    store.delete_user(user_id) -> int                    # entities removed (with all their relations)
    store.health() -> dict                               # {"kind": "neo4j", "status": "ok"|"down", ...}
    store.ensure_schema() -> None                        # idempotent; also done lazily on first use
    store.close() -> None
    format_relations(relations) -> str                   # "- alice -[LIKES]-> Interstellar" lines for a prompt

A relation (search result) is a JSON-ready dict, mem0 1.x's shape plus provenance:
    {"id", "source", "source_type", "relationship", "destination", "destination_type",
     "memory_ids", "created_at", "updated_at", "score"}

Data model
----------
    (:MemoryEntity {id, user_id, name, name_key, match_key, type, vector, vector_dims, memory_ids,
                    created_at, updated_at, created_write})
        unique on (user_id, name_key): the same name for two users is two nodes.
    (:MemoryEntity)-[:MEMORY_RELATION {id, user_id, type, valid, vector, vector_dims, memory_ids, created_at,
                    updated_at, created_write, invalidated_at, invalidated_write, invalidated_by}]->(:MemoryEntity)
        the relation type is a *property* (LLM output is data, never Cypher), `valid=false` is history.
    `vector` is the embedding of the name (entities) or of the fact sentence (relations), int8-quantised
    bytes (see `quantise`).

Every query names the user as a parameter and matches both endpoints of every relationship by it;
no statement is built from text (labels and property names are literals in this file).

Why the choices (contradiction rule, write-failure policy, similarity on the worker) are explained in
shared/GRAPH.md.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared.breaker import Admission, CircuitBreaker
from shared.errors import BackendUnavailable, ConfigurationProblem, ServiceError

if TYPE_CHECKING:
    from neo4j import Driver, ManagedTransaction

    from shared.embeddings import Embedder
    from shared.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The extraction system prompt starts with this; tests (and log readers) recognise the call by it.
EXTRACTION_PROMPT_MARKER = "You extract a knowledge graph"

MAX_NAME_CHARS = 200
MAX_TYPE_CHARS = 50
MAX_EXTRACTION_TEXT_CHARS = 20_000
DEFAULT_ENTITY_TYPE = "entity"
SELF_ENTITY_TYPE = "person"
# How LLMs tend to name the speaker despite being told the user's name; all mean the user's own node.
_SELF_ALIASES = frozenset({"i", "me", "my", "myself", "user", "the user", "我", "用户"})
_WORDS = re.compile(r"\w+")
_NOT_REL_CHARS = re.compile(r"[^A-Z0-9]+")
_NOT_TYPE_CHARS = re.compile(r"[^\w]+")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


# --- errors and results ----------------------------------------------------------------------------


class GraphUnavailable(BackendUnavailable):
    """Neo4j cannot serve the request right now (503 with Retry-After, like every backend outage)."""

    def __init__(self, message: str = "the graph store is unavailable; retry later", *, retry_after: int = 5) -> None:
        super().__init__("graph", message, retry_after=retry_after)


@dataclass
class GraphWriteResult:
    """What one `extract_and_store` did. `status`: written | empty (nothing to store) | rejected."""

    write_id: str
    status: Literal["written", "empty", "rejected"]
    memory_ids: list[str] = field(default_factory=list)
    entities_created: int = 0
    relations_created: int = 0
    relations_supported: int = 0  # relations that already existed and now also cite these memories
    relations_invalidated: int = 0
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GraphReadResult:
    """Relations for a response; `warning` is set (and relations empty) when the graph could not answer."""

    relations: list[dict[str, Any]]
    warning: dict[str, str] | None = None


# --- normalisation ---------------------------------------------------------------------------------


def name_key(name: str) -> str:
    """The identity of an entity within a user: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def match_key(name: str) -> str | None:
    """What must appear in a query for the entity to count as named in it.

    ASCII names match on word boundaries (padded with spaces, like the query) so "Al" does not
    match "also"; other scripts (CJK has no spaces) match as a substring of at least two characters.
    """
    words = _WORDS.findall(name_key(name))
    if not words:
        return None
    joined = " ".join(words)
    if joined.isascii():
        return f" {joined} "
    return joined if len(joined) >= 2 else None


def query_match_text(query: str) -> str:
    return " " + " ".join(_WORDS.findall(name_key(query))) + " "


def normalise_relation_type(value: str) -> str:
    """`likes`, `is a`, `Lives-In` -> LIKES, IS_A, LIVES_IN: [A-Z0-9_], at most 50 characters."""
    ascii_only = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    normalised = _NOT_REL_CHARS.sub("_", ascii_only.upper()).strip("_")
    if not normalised:
        raise ValueError("relation type must contain letters or digits (English UPPER_SNAKE_CASE)")
    if len(normalised) > MAX_TYPE_CHARS:
        raise ValueError(f"relation type longer than {MAX_TYPE_CHARS} characters")
    return normalised


def normalise_entity_type(value: str) -> str:
    normalised = _NOT_TYPE_CHARS.sub("_", unicodedata.normalize("NFKC", value).casefold()).strip("_")
    return normalised[:MAX_TYPE_CHARS] or DEFAULT_ENTITY_TYPE


def _check_name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_NAME_CHARS:
        raise ValueError(f"entity name must be 1-{MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("entity name must not contain control characters")
    return value


# --- what the LLM must answer (anything else is rejected whole) -------------------------------------

EntityName = Annotated[str, Field(strict=True), AfterValidator(_check_name)]
RelationType = Annotated[str, Field(strict=True), AfterValidator(normalise_relation_type)]
EntityType = Annotated[str, Field(strict=True, max_length=200), AfterValidator(normalise_entity_type)]


class _Loose(BaseModel):
    # Extra keys ("reasoning", "confidence") are common and harmless; wrong types and values are not.
    model_config = ConfigDict(extra="ignore")


class ExtractedEntity(_Loose):
    name: EntityName
    type: EntityType = DEFAULT_ENTITY_TYPE


class ExtractedRelation(_Loose):
    source: EntityName
    relation: RelationType
    target: EntityName


class Extraction(_Loose):
    entities: list[ExtractedEntity] = Field(default_factory=list)
    relations: list[ExtractedRelation] = Field(default_factory=list)
    invalidates: list[Annotated[str, Field(strict=True, max_length=20)]] = Field(default_factory=list)


class RejectedExtraction(ValueError):
    """The LLM's answer is not a valid extraction; nothing of it is written."""


def parse_extraction(raw: str, *, max_entities: int, max_relations: int, known_refs: set[str]) -> Extraction:
    """Strictly validate the LLM's JSON answer; raise RejectedExtraction with the reason."""
    fenced = _FENCE.match(raw)  # some OpenAI-compatible servers fence JSON even in JSON mode
    text = fenced.group(1) if fenced else raw
    try:
        data = json.loads(text)
    except ValueError as error:
        raise RejectedExtraction(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise RejectedExtraction(f"expected a JSON object, got {type(data).__name__}")
    try:
        extraction = Extraction.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        raise RejectedExtraction(f"invalid extraction: {problems}") from None
    if len(extraction.entities) > max_entities:
        raise RejectedExtraction(f"{len(extraction.entities)} entities, more than the {max_entities} allowed")
    if len(extraction.relations) > max_relations:
        raise RejectedExtraction(f"{len(extraction.relations)} relations, more than the {max_relations} allowed")
    unknown = [ref for ref in extraction.invalidates if ref not in known_refs]
    if unknown:
        raise RejectedExtraction(f"invalidates unknown relation refs {unknown[:5]}")
    return extraction


# --- prompt ----------------------------------------------------------------------------------------

EXTRACTION_PROMPT = (
    EXTRACTION_PROMPT_MARKER
    + """ of facts about one user from a conversation turn.

The user is the entity named {user}. When the text says "I", "me" or "my", use {user}.

Answer with one JSON object and nothing else:
{{"entities": [{{"name": "...", "type": "..."}}],
 "relations": [{{"source": "...", "relation": "...", "target": "..."}}],
 "invalidates": ["R1"]}}

Rules:
- Keep only facts the user states or confirms about themselves and their world. Ignore questions,
  the assistant's suggestions, hypotheticals and anything uncertain.
- name: short and specific, spelled as in the text (keep its language), at most 200 characters.
- type: one lowercase English word or snake_case phrase (person, film, genre, city, organization,
  programming_language, food, pet, ...).
- relation: an English verb phrase in UPPER_SNAKE_CASE from source to target (LIKES, DISLIKES,
  LIVES_IN, WORKS_AT, IS_A, HAS_PET, PREFERS, ...). Every source and target is an entity.
- At most {max_entities} entities and {max_relations} relations; empty lists when nothing is worth remembering.
- invalidates: refs of the existing relations below that the text makes no longer true (the user
  moved, changed job, stopped liking something, corrected an earlier statement). Never list a
  relation only because the text does not mention it.

Existing relations of this user that may be affected (one JSON object per line):
{existing}"""
)


def build_extraction_messages(
    user_id: str, text: str, existing: Sequence[tuple[str, dict[str, Any]]], max_entities: int, max_relations: int
) -> list[dict[str, str]]:
    # Names are user-derived text: JSON-encode them so quotes or newlines cannot reshape the prompt.
    lines = [
        json.dumps(
            {"ref": ref, "source": r["source"], "relation": r["relationship"], "target": r["destination"]},
            ensure_ascii=False,
        )
        for ref, r in existing
    ]
    system = EXTRACTION_PROMPT.format(
        user=json.dumps(user_id, ensure_ascii=False),
        existing="\n".join(lines) or "(none)",
        max_entities=max_entities,
        max_relations=max_relations,
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def format_relations(relations: Sequence[dict[str, Any]]) -> str:
    """Relations as prompt lines for the chat agent; empty string when there are none."""
    return "\n".join(f"- {r['source']} -[{r['relationship']}]-> {r['destination']}" for r in relations)


# --- Cypher ----------------------------------------------------------------------------------------
# Every statement is a literal; values (user ids, names, relation types, vectors) are parameters.

SCHEMA_STATEMENTS = (
    "CREATE CONSTRAINT memory_entity_user_name IF NOT EXISTS "
    "FOR (e:MemoryEntity) REQUIRE (e.user_id, e.name_key) IS UNIQUE",
    "CREATE INDEX memory_entity_user IF NOT EXISTS FOR (e:MemoryEntity) ON (e.user_id)",
    "CREATE CONSTRAINT memory_entity_id IF NOT EXISTS FOR (e:MemoryEntity) REQUIRE e.id IS UNIQUE",
    "CREATE INDEX memory_relation_id IF NOT EXISTS FOR ()-[r:MEMORY_RELATION]-() ON (r.id)",
)

# Search reads everything it ranks in one read transaction, in two statements, and ranks in Python:
# 1. every entity of the user as one row of parallel lists (ids, vectors), with those the query names
#    and the user's own node;
# 2. the valid relations around the seed entities, with their fact-sentence vectors.
# The similarity is computed on the worker (numpy over int8 vectors), not in Cypher: at 1,000
# entities per user that is ~5x faster than vector.similarity.cosine over float lists (see GRAPH.md),
# exact per user (Neo4j 5.26's vector index cannot be filtered by user before its top-k), and it puts
# the arithmetic on the horizontally scaled workers instead of the one shared database.
SEARCH_ENTITIES = """
MATCH (e:MemoryEntity {user_id: $user_id})
RETURN collect(e.id) AS ids, collect(coalesce(e.vector, $no_vector)) AS vectors,
       collect(CASE WHEN e.match_key IS NOT NULL AND $query_match CONTAINS e.match_key THEN e.id END) AS named,
       collect(CASE WHEN e.name_key = $self_key THEN e.id END) AS self
"""

SEARCH_RELATIONS = """
UNWIND $seed_ids AS seed_id
MATCH (seed:MemoryEntity {user_id: $user_id, id: seed_id})
MATCH (seed)-[r:MEMORY_RELATION {valid: true}]-(:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id
WITH DISTINCT r
RETURN collect(r.id) AS ids, collect(startNode(r).id) AS source_ids, collect(endNode(r).id) AS destination_ids,
       collect(coalesce(r.created_at, '')) AS created, collect(coalesce(r.vector, $no_vector)) AS vectors
"""

# Details only for the relations that made the cut (one row per relation costs ~0.1 ms to decode).
RELATION_DETAILS = """
UNWIND $relation_ids AS relation_id
MATCH (s:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION {id: relation_id}]->(o:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id
RETURN r.id AS id, r.user_id AS user_id, s.name AS source, s.type AS source_type, r.type AS relationship,
       o.name AS destination, o.type AS destination_type, r.memory_ids AS memory_ids,
       r.created_at AS created_at, r.updated_at AS updated_at
"""

INVALIDATE = """
UNWIND $relation_ids AS relation_id
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION {id: relation_id}]->(:MemoryEntity {user_id: $user_id})
WHERE r.valid AND r.user_id = $user_id
SET r.valid = false, r.invalidated_at = $now, r.invalidated_write = $write_id, r.invalidated_by = $memory_ids
RETURN count(r) AS invalidated
"""

MERGE_ENTITIES = """
UNWIND $entities AS ent
MERGE (e:MemoryEntity {user_id: $user_id, name_key: ent.name_key})
ON CREATE SET e.id = ent.id, e.name = ent.name, e.type = ent.type, e.match_key = ent.match_key,
              e.vector = ent.vector, e.vector_dims = $dims, e.memory_ids = [], e.created_at = $now,
              e.created_write = $write_id
WITH e, ent, (e.type = $default_type AND ent.type <> $default_type) AS typed_now
// A vector from another embedder (other size) is useless for similarity: replace it.
WITH e, ent, typed_now, (typed_now OR coalesce(e.vector_dims, 0) <> $dims) AS re_embed
SET e.updated_at = $now,
    e.memory_ids = e.memory_ids + [m IN $memory_ids WHERE NOT m IN e.memory_ids],
    e.type = CASE WHEN typed_now THEN ent.type ELSE e.type END,
    e.vector = CASE WHEN re_embed THEN ent.vector ELSE e.vector END,
    e.vector_dims = $dims
RETURN count(CASE WHEN e.created_write = $write_id THEN 1 END) AS created
"""

# MERGE on (source, type, valid, target): restating a known fact adds support instead of a duplicate.
MERGE_RELATIONS = """
UNWIND $relations AS rel
MATCH (s:MemoryEntity {user_id: $user_id, name_key: rel.source_key})
MATCH (o:MemoryEntity {user_id: $user_id, name_key: rel.target_key})
MERGE (s)-[r:MEMORY_RELATION {type: rel.type, valid: true}]->(o)
ON CREATE SET r.id = rel.id, r.user_id = $user_id, r.memory_ids = [], r.created_at = $now,
              r.created_write = $write_id, r.vector = rel.vector, r.vector_dims = $dims
SET r.updated_at = $now, r.memory_ids = r.memory_ids + [m IN $memory_ids WHERE NOT m IN r.memory_ids]
RETURN count(CASE WHEN r.created_write = $write_id THEN 1 END) AS created, count(r) AS merged
"""

DELETE_MEMORY_RELATIONS = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id AND $memory_id IN r.memory_ids
SET r.memory_ids = [m IN r.memory_ids WHERE m <> $memory_id]
WITH r WHERE size(r.memory_ids) = 0
DELETE r
RETURN count(*) AS removed
"""

DELETE_MEMORY_ENTITIES = """
MATCH (e:MemoryEntity {user_id: $user_id})
WHERE $memory_id IN e.memory_ids
SET e.memory_ids = [m IN e.memory_ids WHERE m <> $memory_id]
WITH e WHERE size(e.memory_ids) = 0 AND NOT (e)--()
DELETE e
RETURN count(*) AS removed
"""

REVERT_CREATED_RELATIONS = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE r.created_write = $write_id
DELETE r
"""

REVERT_INVALIDATIONS = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE r.invalidated_write = $write_id
SET r.valid = true, r.invalidated_at = null, r.invalidated_write = null, r.invalidated_by = null
"""

REVERT_RELATION_SUPPORT = """
MATCH (:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(:MemoryEntity {user_id: $user_id})
WHERE any(m IN r.memory_ids WHERE m IN $memory_ids)
SET r.memory_ids = [m IN r.memory_ids WHERE NOT m IN $memory_ids]
"""

REVERT_ENTITY_SUPPORT = """
MATCH (e:MemoryEntity {user_id: $user_id})
WHERE any(m IN e.memory_ids WHERE m IN $memory_ids)
SET e.memory_ids = [m IN e.memory_ids WHERE NOT m IN $memory_ids]
"""

REVERT_CREATED_ENTITIES = """
MATCH (e:MemoryEntity {user_id: $user_id})
WHERE e.created_write = $write_id AND NOT (e)--()
DELETE e
"""

DELETE_USER_BATCH = """
MATCH (e:MemoryEntity {user_id: $user_id})
WITH e LIMIT $batch
DETACH DELETE e
RETURN count(*) AS removed
"""

GRAPH_NODES = """
MATCH (e:MemoryEntity {user_id: $user_id})
RETURN e.id AS id, e.name AS name, e.type AS type, e.memory_ids AS memory_ids,
       e.created_at AS created_at, e.updated_at AS updated_at
ORDER BY e.created_at, e.name_key
LIMIT $limit
"""

GRAPH_EDGES = """
MATCH (s:MemoryEntity {user_id: $user_id})-[r:MEMORY_RELATION]->(o:MemoryEntity {user_id: $user_id})
WHERE r.user_id = $user_id AND ($include_history OR r.valid)
RETURN r.id AS id, s.id AS source, o.id AS target, s.name AS source_name, o.name AS target_name,
       r.type AS relationship, r.valid AS valid, r.memory_ids AS memory_ids, r.created_at AS created_at,
       r.updated_at AS updated_at, r.invalidated_at AS invalidated_at
ORDER BY r.created_at, r.id
LIMIT $limit
"""


# --- vectors ---------------------------------------------------------------------------------------


def quantise(vector: Sequence[float]) -> bytes:
    """An embedding as int8 bytes, scaled so its largest component is +-127.

    Cosine similarity ignores a vector's length, so the scale need not be stored; the rounding
    moves a cosine by at most ~0.001 (MiniLM, 384 dimensions), far below any useful threshold. A
    384-dimension vector is 384 bytes instead of ~3 KB of doubles: search reads all of a user's.
    """
    import numpy as np

    values = np.asarray(vector, dtype=np.float32)
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if peak == 0.0:
        return bytes(values.size)
    return bytes(np.round(values / peak * 127).astype(np.int8).tobytes())


def _cosines(vectors: Sequence[bytes], query: Any) -> Any:
    """Cosine of each int8 vector with the unit-length `query`; 0 for a missing or other-size vector."""
    import numpy as np

    dims = query.shape[0]
    result = np.zeros(len(vectors), dtype=np.float32)
    usable = [i for i, v in enumerate(vectors) if v is not None and len(v) == dims]
    if not usable or dims == 0:
        return result
    matrix = np.frombuffer(b"".join(vectors[i] for i in usable), dtype=np.int8).reshape(len(usable), dims)
    matrix = matrix.astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    result[usable] = (matrix @ query) / norms
    return result


# --- the store -------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _classify(error: BaseException) -> ServiceError | None:
    """A driver error as the service error it means, or None for a bug (which must surface)."""
    from neo4j import exceptions as neo

    if isinstance(error, ServiceError):
        return error
    if isinstance(error, neo.AuthError | neo.Forbidden):
        return GraphUnavailable(
            "Neo4j refused our credentials or their permissions (NEO4J_USERNAME, NEO4J_PASSWORD)", retry_after=60
        )
    if isinstance(error, neo.ConfigurationError):
        return ConfigurationProblem(f"NEO4J_URI or the Neo4j driver settings are invalid: {error}")
    if isinstance(error, neo.ClientError) and "DatabaseNotFound" in (error.code or ""):
        return ConfigurationProblem("NEO4J_DATABASE names a database that does not exist")
    outage = (
        neo.ServiceUnavailable,
        neo.SessionExpired,
        neo.ConnectionPoolError,
        neo.TransientError,
        neo.DatabaseError,
        OSError,
        TimeoutError,
    )
    if isinstance(error, outage):
        return GraphUnavailable()
    return None


class GraphStore:
    """A user-scoped knowledge graph on Neo4j, shared by every request of a worker (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        llm: Any,
        *,
        min_similarity: float = 0.3,
        seed_limit: int = 10,
        context_limit: int = 40,
        max_entities: int = 30,
        max_relations: int = 30,
        connection_timeout: float = 3.0,
        max_retry_time: float = 2.0,
        query_timeout: float = 15.0,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.llm = llm
        # MiniLM puts related names at 0.3-0.6 and unrelated ones below 0.2 (see GRAPH.md).
        self.min_similarity = min_similarity
        self.seed_limit = seed_limit
        self.context_limit = context_limit
        self.max_entities = max_entities
        self.max_relations = max_relations
        self.connection_timeout = connection_timeout
        self.max_retry_time = max_retry_time
        self.query_timeout = query_timeout
        self._driver: Driver | None = None
        self._schema_ready = False
        self._lock = threading.Lock()
        # Fail fast during an outage, serve again on the first call after it (see shared/breaker.py).
        self.breaker = CircuitBreaker()

    # --- connection ------------------------------------------------------------------------------
    def driver(self) -> Driver:
        """The worker's driver, built on first use (building does no I/O)."""
        if self._driver is None:
            with self._lock:
                if self._driver is None:
                    self._driver = self._build_driver()
        return self._driver

    def _build_driver(self) -> Driver:
        from neo4j import GraphDatabase

        s = self.settings
        if not s.neo4j_uri:
            raise ConfigurationProblem("NEO4J_URI is required when GRAPH_STORE=neo4j")
        try:
            return GraphDatabase.driver(
                s.neo4j_uri,
                auth=(s.neo4j_username, s.neo4j_password or ""),
                # Small budgets so an outage is seen in seconds, not after the driver's 30 s defaults.
                connection_timeout=self.connection_timeout,
                connection_acquisition_timeout=self.connection_timeout + 2,
                max_transaction_retry_time=self.max_retry_time,
                # Azure load balancers drop idle TCP flows after ~4 minutes; recycle before that.
                max_connection_lifetime=200,
                liveness_check_timeout=30,
                user_agent="memory-layer-graph",
                # Schema hints ("property key does not exist" on an empty database) are noise here.
                notifications_min_severity="OFF",
            )
        except Exception as error:
            raise _classify(error) or error from error

    def close(self) -> None:
        """Close the driver (idempotent); the next call builds a new one."""
        with self._lock:
            driver, self._driver = self._driver, None
            self._schema_ready = False
        if driver is not None:
            driver.close()

    def ensure_schema(self) -> None:
        """Create the constraint and indexes if missing (safe to run from many workers at once)."""
        from neo4j import exceptions as neo

        if self._schema_ready:
            return
        with self._neo4j("schema setup"):
            driver = self.driver()
            for statement in SCHEMA_STATEMENTS:
                try:
                    driver.execute_query(statement, database_=self.settings.neo4j_database)
                except neo.ClientError as error:
                    code = error.code or ""
                    if "EquivalentSchemaRuleAlreadyExists" in code or "IndexAlreadyExists" in code:
                        continue  # another worker created it between our IF NOT EXISTS and the commit
                    if "Security" in code:
                        # Managed Neo4j may deny schema changes to an app user; MERGE still works,
                        # only concurrent first writes of one name could then duplicate a node.
                        logger.warning("no permission to create graph schema (%s); continuing without it", code)
                        continue
                    raise
            self._schema_ready = True

    @contextmanager
    def _neo4j(self, what: str) -> Iterator[None]:
        """Map driver errors to service errors, and pass through the breaker.

        While the breaker is open the call is refused if another one is already trying; otherwise
        it is the trial, and a connectivity probe runs first: a refused connection costs
        milliseconds, where the real work would spend the driver's whole retry budget.
        """
        admission = self.breaker.admit()
        if admission is Admission.REFUSED:
            raise GraphUnavailable("the graph store is unavailable; retry later")
        reached: bool | None = None
        try:
            if admission is Admission.TRIAL:
                self.driver().verify_connectivity()
            yield
            reached = True
        except Exception as error:
            mapped = _classify(error)
            if mapped is None:
                raise
            if isinstance(mapped, GraphUnavailable):
                reached = False
                logger.warning("graph %s failed: %s: %s", what, type(error).__name__, error)
            if mapped is error:
                raise
            raise mapped from error
        finally:
            self.breaker.record(admission, reached=reached)

    def _run(self, access: Literal["read", "write"], work: Callable[[ManagedTransaction], T], what: str) -> T:
        """Run `work` as one managed transaction (retried by the driver on transient errors)."""
        from neo4j import unit_of_work

        self.ensure_schema()
        timed = unit_of_work(timeout=self.query_timeout)(work)
        with (
            self._neo4j(what),
            self.driver().session(database=self.settings.neo4j_database) as session,
        ):
            if access == "read":
                return session.execute_read(timed)
            return session.execute_write(timed)

    def health(self) -> dict[str, Any]:
        """A real round trip to Neo4j (whatever the breaker says, and it tells the breaker); never raises."""
        started = time.perf_counter()
        try:
            self.driver().verify_connectivity()
            self.breaker.succeeded()
            status: dict[str, Any] = {"kind": "neo4j", "status": "ok", "schema_ready": self._schema_ready}
        except Exception as error:
            if isinstance(_classify(error), GraphUnavailable):
                self.breaker.failed()
            status = {"kind": "neo4j", "status": "down", "error": f"{type(error).__name__}: {error}"[:300]}
        status["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return status

    # --- read path -------------------------------------------------------------------------------
    def search(
        self, user_id: str, query: str, limit: int = 10, *, vector: Sequence[float] | None = None
    ) -> list[dict[str, Any]]:
        """The user's valid relations most relevant to `query`, best first.

        An entity is relevant when the query names it or its embedding is similar to the query's
        (cosine >= min_similarity); a relation is scored by its more relevant endpoint. Pass
        `vector` to reuse an embedding of `query` already computed. Raises GraphUnavailable.
        """
        return self._search(user_id, query, limit, self.min_similarity, vector)

    def search_safe(
        self, user_id: str, query: str, limit: int = 10, *, vector: Sequence[float] | None = None
    ) -> GraphReadResult:
        """`search` for responses that must not fail because of the graph: outage -> no relations + warning."""
        try:
            return GraphReadResult(self.search(user_id, query, limit, vector=vector))
        except ServiceError as error:  # outage, refused credentials, misconfiguration: said, not raised
            return GraphReadResult([], {"code": "graph_unavailable", "message": error.message})
        except Exception:
            # A bug must not take the memory search down with it; the traceback goes to the log.
            logger.exception("graph search failed")
            return GraphReadResult([], {"code": "graph_error", "message": "graph relations could not be read"})

    def _search(
        self, user_id: str, query: str, limit: int, min_similarity: float, vector: Sequence[float] | None
    ) -> list[dict[str, Any]]:
        import numpy as np

        if limit <= 0 or not query.strip():
            return []
        # Check the breaker before embedding: a refused call should cost nothing.
        if self.breaker.would_refuse():
            raise GraphUnavailable("the graph store is unavailable; retry later")
        query_vector = np.asarray(vector if vector is not None else self.embedder.embed(query, "search"), np.float32)
        norm = float(np.linalg.norm(query_vector))
        query_vector = query_vector / norm if norm else query_vector
        query_match = query_match_text(query)
        self_key = name_key(user_id)
        seed_limit = self.seed_limit

        def work(tx: ManagedTransaction) -> list[dict[str, Any]]:
            entities = tx.run(
                SEARCH_ENTITIES, user_id=user_id, query_match=query_match, self_key=self_key, no_vector=b""
            ).single(strict=True)
            ids: list[str] = entities["ids"]
            if not ids:
                return []
            named = set(entities["named"])
            relevance = np.where([i in named for i in ids], 1.0, _cosines(entities["vectors"], query_vector))
            order = np.argsort(-relevance, kind="stable")
            seeds = [ids[i] for i in order[:seed_limit] if relevance[i] >= min_similarity]
            seeds += [i for i in entities["self"] if i not in seeds]
            if not seeds:
                return []
            around = tx.run(SEARCH_RELATIONS, user_id=user_id, seed_ids=seeds, no_vector=b"").single(strict=True)
            if not around["ids"]:
                return []
            # A relation is as relevant as the best of its two entities and its fact sentence.
            by_id = dict(zip(ids, relevance.tolist(), strict=True))
            facts = _cosines(around["vectors"], query_vector).tolist()
            ranked = sorted(
                (
                    (max(by_id.get(source, 0.0), by_id.get(destination, 0.0), fact), created, relation_id)
                    for relation_id, source, destination, created, fact in zip(
                        around["ids"],
                        around["source_ids"],
                        around["destination_ids"],
                        around["created"],
                        facts,
                        strict=True,
                    )
                ),
                reverse=True,  # best score first, newest first among equal scores
            )
            kept = {rid: score for score, _, rid in ranked[:limit] if score >= min_similarity}
            if not kept:
                return []
            details = [dict(r.items()) for r in tx.run(RELATION_DETAILS, user_id=user_id, relation_ids=list(kept))]
            for row in details:
                row["score"] = round(kept[row["id"]], 4)
            return details

        rows = self._run("read", work, "search")
        relations = []
        for row in rows:
            if row.pop("user_id") != user_id:  # never trust a query filter alone with another user's data
                logger.error("graph search returned a relation of another user; dropped")
                continue
            relations.append(row)
        relations.sort(key=lambda r: r["created_at"] or "", reverse=True)
        relations.sort(key=lambda r: r["score"], reverse=True)  # stable: newest first among equal scores
        return relations[:limit]

    def user_graph(self, user_id: str, *, include_history: bool = False, limit: int = 10_000) -> dict[str, Any]:
        """The user's whole graph for inspection or export: nodes, edges (history too when asked)."""

        def work(tx: ManagedTransaction) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            nodes = tx.run(GRAPH_NODES, user_id=user_id, limit=limit + 1).data()
            edges = tx.run(GRAPH_EDGES, user_id=user_id, include_history=include_history, limit=limit + 1).data()
            return nodes, edges

        nodes, edges = self._run("read", work, "graph read")
        truncated = len(nodes) > limit or len(edges) > limit
        return {"nodes": nodes[:limit], "edges": edges[:limit], "truncated": truncated}

    # --- write path ------------------------------------------------------------------------------
    def extract_and_store(self, user_id: str, text: str, memory_ids: Sequence[str] = ()) -> GraphWriteResult:
        """Extract entities and relations from `text` with the LLM and merge them into the user's graph.

        `memory_ids` are the memories learned from the same text (mem0 ADD/UPDATE ids): they become
        the relations' support, which is what `delete_memory` cascades on. Order: read the user's
        affected relations (Neo4j first, so an outage fails before the LLM is paid for), one LLM
        call, validate, embed new names, one write transaction. Raises GraphUnavailable on a Neo4j
        outage and the LLM's own BackendUnavailable / LlmNotConfigured; a malformed answer is
        returned as status "rejected" and nothing is written.
        """
        write_id = uuid.uuid4().hex
        mids = list(dict.fromkeys(str(m) for m in memory_ids))
        result = GraphWriteResult(write_id=write_id, status="empty", memory_ids=mids)
        if not text.strip():
            return result
        if len(text) > MAX_EXTRACTION_TEXT_CHARS:
            logger.info("graph extraction text cut to %d characters", MAX_EXTRACTION_TEXT_CHARS)
            text = text[:MAX_EXTRACTION_TEXT_CHARS]

        context = self._search(user_id, text, self.context_limit, -2.0, None)  # every score counts as context
        refs = {f"R{i + 1}": relation for i, relation in enumerate(context)}
        messages = build_extraction_messages(user_id, text, list(refs.items()), self.max_entities, self.max_relations)
        raw = self.llm.complete(messages, json_mode=True)
        try:
            extraction = parse_extraction(
                raw, max_entities=self.max_entities, max_relations=self.max_relations, known_refs=set(refs)
            )
        except RejectedExtraction as error:
            logger.warning(
                "graph extraction rejected, nothing written (LLM answer of %d chars): %s", len(raw or ""), error
            )
            logger.debug("rejected graph extraction: %.500r", raw)
            result.status, result.reason = "rejected", str(error)
            return result

        entities, relations = self._plan(user_id, extraction)
        asserted = {(r["source_key"], r["type"], r["target_key"]) for r in relations}
        invalidate = []
        for ref in dict.fromkeys(extraction.invalidates):
            old = refs[ref]
            # Invalidating a relation while restating it would only churn history; keep it.
            if (name_key(old["source"]), old["relationship"], name_key(old["destination"])) not in asserted:
                invalidate.append(old["id"])
        if not entities and not invalidate:
            return result

        # One embedding call for the names and the fact sentences of this write.
        items = [*entities, *relations]
        vectors = self.embedder.embed_batch([item.pop("embed_text") for item in items], "add") if items else []
        for item, vector in zip(items, vectors, strict=True):
            item["vector"] = quantise(vector)
        params = {
            "user_id": user_id,
            "write_id": write_id,
            "memory_ids": mids,
            "now": _now(),
            "default_type": DEFAULT_ENTITY_TYPE,
            "dims": int(self.embedder.dims),
        }

        def work(tx: ManagedTransaction) -> tuple[int, int, int, int]:
            invalidated = 0
            if invalidate:
                invalidated = tx.run(INVALIDATE, params, relation_ids=invalidate).single(strict=True)["invalidated"]
            created_entities = 0
            if entities:
                created_entities = tx.run(MERGE_ENTITIES, params, entities=entities).single(strict=True)["created"]
            created = merged = 0
            if relations:
                record = tx.run(MERGE_RELATIONS, params, relations=relations).single(strict=True)
                created, merged = record["created"], record["merged"]
            return invalidated, created_entities, created, merged

        invalidated, created_entities, created, merged = self._run("write", work, "write")
        result.status = "written"
        result.relations_invalidated = invalidated
        result.entities_created = created_entities
        result.relations_created = created
        result.relations_supported = merged - created
        return result

    def _plan(self, user_id: str, extraction: Extraction) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Entities and relations as write parameters: deduplicated by key, the user's aliases resolved."""
        self_key = name_key(user_id)
        entities: dict[str, dict[str, Any]] = {}

        def entity(name: str, type_: str) -> str:
            key = name_key(name)
            if key in _SELF_ALIASES or key == self_key:
                name, key, type_ = user_id, self_key, SELF_ENTITY_TYPE
            known = entities.get(key)
            if known is None:
                entities[key] = {
                    "id": uuid.uuid4().hex,
                    "name": name,
                    "name_key": key,
                    "match_key": match_key(name),
                    "type": type_,
                    "embed_text": name if type_ == DEFAULT_ENTITY_TYPE else f"{name} ({type_.replace('_', ' ')})",
                }
            elif known["type"] == DEFAULT_ENTITY_TYPE and type_ != DEFAULT_ENTITY_TYPE:
                known["type"] = type_
                known["embed_text"] = f"{known['name']} ({type_.replace('_', ' ')})"
            return key

        for item in extraction.entities:
            entity(item.name, item.type)
        relations: dict[tuple[str, str, str], dict[str, Any]] = {}
        for rel in extraction.relations:
            source = entity(rel.source, DEFAULT_ENTITY_TYPE)
            target = entity(rel.target, DEFAULT_ENTITY_TYPE)
            if source == target:
                logger.info("graph extraction: self-relation %s on one entity skipped", rel.relation)
                continue
            if (source, rel.relation, target) in relations:
                continue
            # The fact as a sentence, first person for the user, as queries are ("where do I live").
            subject = "I" if source == self_key else entities[source]["name"]
            obj = "me" if target == self_key else entities[target]["name"]
            relations[(source, rel.relation, target)] = {
                "id": uuid.uuid4().hex,
                "source_key": source,
                "target_key": target,
                "type": rel.relation,
                "embed_text": f"{subject} {rel.relation.lower().replace('_', ' ')} {obj}",
            }
        return list(entities.values()), list(relations.values())

    def revert_write(self, user_id: str, result: GraphWriteResult) -> None:
        """Undo one write: its new relations and entities go, its invalidations are lifted, and its
        memory ids no longer support anything. For a chat turn that fails after the graph write."""
        if result.status != "written":
            return
        params = {"user_id": user_id, "write_id": result.write_id, "memory_ids": result.memory_ids}

        def work(tx: ManagedTransaction) -> None:
            tx.run(REVERT_CREATED_RELATIONS, params).consume()
            tx.run(REVERT_INVALIDATIONS, params).consume()
            if result.memory_ids:
                tx.run(REVERT_RELATION_SUPPORT, params).consume()
                tx.run(REVERT_ENTITY_SUPPORT, params).consume()
            tx.run(REVERT_CREATED_ENTITIES, params).consume()

        self._run("write", work, "revert")

    # --- deletion --------------------------------------------------------------------------------
    def delete_memory(self, user_id: str, memory_id: str) -> int:
        """The memory no longer supports anything; relations (current or history) that only it
        supported are deleted, then entities left with neither support nor relations. Returns the
        number of relations deleted. Idempotent."""

        def work(tx: ManagedTransaction) -> int:
            removed: int = tx.run(DELETE_MEMORY_RELATIONS, user_id=user_id, memory_id=memory_id).single(strict=True)[
                "removed"
            ]
            tx.run(DELETE_MEMORY_ENTITIES, user_id=user_id, memory_id=memory_id).consume()
            return removed

        return self._run("write", work, "memory deletion")

    def delete_user(self, user_id: str, batch: int = 2_000) -> int:
        """Delete all of the user's entities and relations (batched, so a huge graph never needs one
        huge transaction); other users' nodes are untouched. Returns the entities deleted."""

        def work(tx: ManagedTransaction) -> int:
            removed: int = tx.run(DELETE_USER_BATCH, user_id=user_id, batch=batch).single(strict=True)["removed"]
            return removed

        total = 0
        while True:
            removed = self._run("write", work, "user deletion")
            total += removed
            if removed < batch:
                return total


def build_graph_store(settings: Settings, embedder: Embedder, llm: Any) -> GraphStore | None:
    """The graph store for GRAPH_STORE=neo4j (no I/O until first use), or None for GRAPH_STORE=none."""
    if settings.graph_store != "neo4j":
        return None
    return GraphStore(settings, embedder, llm)
