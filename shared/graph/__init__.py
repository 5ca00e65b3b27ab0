"""Graph memory on Neo4j: the entities a user talks about and the typed relations between them.

mem0 2.x has no graph store, so this package is the whole graph layer, on the official `neo4j`
driver (any Neo4j 5, no plugin). One `GraphStore` per worker, built by `build_graph_store`
(None when GRAPH_STORE=none; no I/O until first use):

    store.extract_and_store(user_id, text, memory_ids) -> GraphWriteResult   # one LLM call, one write
    store.revert_write(user_id, result)                                      # undo a write
    store.search(user_id, query, limit=10, *, vector=None) -> list[dict]     # raises GraphUnavailable
    store.search_safe(...) -> GraphReadResult(relations, warning)            # never raises
    store.user_graph(user_id, *, include_history=False) -> {"nodes", "edges", "truncated"}
    store.delete_memory(user_id, memory_id) -> int                           # relations only it supported
    store.delete_user(user_id) -> int                                        # entities, with their relations
    store.health() / store.ensure_schema() / store.close()
    format_relations(relations) -> str                                       # lines for the chat prompt

A relation is a JSON-ready dict: {"id", "source", "source_type", "relationship", "destination",
"destination_type", "memory_ids", "created_at", "updated_at", "score"}. The relation type is a
property, never a label: LLM output is data, never Cypher.

Modules, each depending only on those above it: `cypher` (every statement), `prompt` (the
extraction prompt), `extraction` (validation of the LLM's answer, name keys, vector encoding),
`connection` (driver, schema, breaker, error mapping), `store` (`GraphStore`: read, write and
deletion paths). The data model and why the choices were made (contradiction rule, failing writes
instead of queueing them, similarity on the worker): docs/graph.md.
"""

from shared.graph.connection import GraphUnavailable
from shared.graph.extraction import (
    DEFAULT_ENTITY_TYPE,
    MAX_EXTRACTION_TEXT_CHARS,
    MAX_NAME_CHARS,
    MAX_TYPE_CHARS,
    SELF_ENTITY_TYPE,
    ExtractedEntity,
    ExtractedRelation,
    Extraction,
    RejectedExtraction,
    match_key,
    name_key,
    normalise_entity_type,
    normalise_relation_type,
    parse_extraction,
    quantise,
    query_match_text,
)
from shared.graph.prompt import EXTRACTION_PROMPT, EXTRACTION_PROMPT_MARKER, build_extraction_messages, format_relations
from shared.graph.store import GraphReadResult, GraphStore, GraphWriteResult, build_graph_store

__all__ = [
    "DEFAULT_ENTITY_TYPE",
    "EXTRACTION_PROMPT",
    "EXTRACTION_PROMPT_MARKER",
    "MAX_EXTRACTION_TEXT_CHARS",
    "MAX_NAME_CHARS",
    "MAX_TYPE_CHARS",
    "SELF_ENTITY_TYPE",
    "ExtractedEntity",
    "ExtractedRelation",
    "Extraction",
    "GraphReadResult",
    "GraphStore",
    "GraphUnavailable",
    "GraphWriteResult",
    "RejectedExtraction",
    "build_extraction_messages",
    "build_graph_store",
    "format_relations",
    "match_key",
    "name_key",
    "normalise_entity_type",
    "normalise_relation_type",
    "parse_extraction",
    "quantise",
    "query_match_text",
]
