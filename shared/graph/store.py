"""`GraphStore`: the user-scoped graph on Neo4j — the read, write, revert and deletion paths."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.context import iso_utc
from shared.errors import ServiceError
from shared.graph.connection import GraphUnavailable, Neo4jConnection
from shared.graph.cypher import (
    DELETE_MEMORY_ENTITIES,
    DELETE_MEMORY_RELATIONS,
    DELETE_USER_BATCH,
    GRAPH_EDGES,
    GRAPH_NODES,
    INVALIDATE,
    MERGE_ENTITIES,
    MERGE_RELATIONS,
    RELATION_DETAILS,
    REVERT_CREATED_ENTITIES,
    REVERT_CREATED_RELATIONS,
    REVERT_ENTITY_SUPPORT,
    REVERT_INVALIDATIONS,
    REVERT_RELATION_SUPPORT,
    SEARCH_ENTITIES,
    SEARCH_RELATIONS,
)
from shared.graph.extraction import (
    _SELF_ALIASES,
    DEFAULT_ENTITY_TYPE,
    MAX_EXTRACTION_TEXT_CHARS,
    SELF_ENTITY_TYPE,
    Extraction,
    RejectedExtraction,
    _cosines,
    match_key,
    name_key,
    parse_extraction,
    quantise,
    query_match_text,
)
from shared.graph.prompt import build_extraction_messages

if TYPE_CHECKING:
    from neo4j import ManagedTransaction

    from shared.ai.embeddings import Embedder
    from shared.settings import Settings

# The package's name, as when graph memory was one module: log filters and queries keep working.
logger = logging.getLogger("shared.graph")


# --- results ---------------------------------------------------------------------------------------


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


# --- the store -------------------------------------------------------------------------------------


def _now() -> str:
    return iso_utc()


class GraphStore(Neo4jConnection):
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
        super().__init__(
            settings, connection_timeout=connection_timeout, max_retry_time=max_retry_time, query_timeout=query_timeout
        )
        self.embedder = embedder
        self.llm = llm
        # MiniLM puts related names at 0.3-0.6 and unrelated ones below 0.2 (see docs/graph.md).
        self.min_similarity = min_similarity
        self.seed_limit = seed_limit
        self.context_limit = context_limit
        self.max_entities = max_entities
        self.max_relations = max_relations

    # --- read path -------------------------------------------------------------------------------
    def search(
        self,
        user_id: str,
        query: str,
        limit: int = 10,
        *,
        vector: Sequence[float] | None = None,
        self_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """The user's valid relations most relevant to `query`, best first.

        An entity is relevant when the query names it or its embedding is similar to the query's
        (cosine >= min_similarity); a relation is scored by its more relevant endpoint. Pass
        `vector` to reuse an embedding of `query` already computed. `user_id` is the user's storage
        key (shared/scope.py); `self_name`, the user's own name when it differs from the key (with
        tenancy), is the name of the user's own node. Raises GraphUnavailable.
        """
        return self._search(user_id, query, limit, self.min_similarity, vector, self_name)

    def search_safe(
        self,
        user_id: str,
        query: str,
        limit: int = 10,
        *,
        vector: Sequence[float] | None = None,
        self_name: str | None = None,
    ) -> GraphReadResult:
        """`search` for responses that must not fail because of the graph: outage -> no relations + warning."""
        try:
            return GraphReadResult(self.search(user_id, query, limit, vector=vector, self_name=self_name))
        except ServiceError as error:  # outage, refused credentials, misconfiguration: said, not raised
            return GraphReadResult([], {"code": "graph_unavailable", "message": error.message})
        except Exception:
            # A bug must not take the memory search down with it; the traceback goes to the log.
            logger.exception("graph search failed")
            return GraphReadResult([], {"code": "graph_error", "message": "graph relations could not be read"})

    def _search(
        self,
        user_id: str,
        query: str,
        limit: int,
        min_similarity: float,
        vector: Sequence[float] | None,
        self_name: str | None = None,
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
        self_key = name_key(self_name or user_id)
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
            details = [r.data() for r in tx.run(RELATION_DETAILS, user_id=user_id, relation_ids=list(kept))]
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
    def extract_and_store(
        self,
        user_id: str,
        text: str,
        memory_ids: Sequence[str] = (),
        *,
        write_id: str | None = None,
        self_name: str | None = None,
    ) -> GraphWriteResult:
        """Extract entities and relations from `text` with the LLM and merge them into the user's graph.

        `memory_ids` are the memories learned from the same text (mem0 ADD/UPDATE ids): they become
        the relations' support, which is what `delete_memory` cascades on. Order: read the user's
        affected relations (Neo4j first, so an outage fails before the LLM is paid for), one LLM
        call, validate, embed new names, one write transaction. Raises GraphUnavailable on a Neo4j
        outage and the LLM's own BackendUnavailable / LlmNotConfigured; a malformed answer is
        returned as status "rejected" and nothing is written. `write_id` names the write for
        `revert_write` (an ingestion event gives its own, so a redo after a crash can revert it).
        """
        write_id = write_id or uuid.uuid4().hex
        mids = list(dict.fromkeys(str(m) for m in memory_ids))
        result = GraphWriteResult(write_id=write_id, status="empty", memory_ids=mids)
        if not text.strip():
            return result
        if len(text) > MAX_EXTRACTION_TEXT_CHARS:
            logger.info("graph extraction text cut to %d characters", MAX_EXTRACTION_TEXT_CHARS)
            text = text[:MAX_EXTRACTION_TEXT_CHARS]

        name = self_name or user_id  # the user's own node: the plain user id, never the storage key
        context = self._search(user_id, text, self.context_limit, -2.0, None, name)  # every score is context
        refs = {f"R{i + 1}": relation for i, relation in enumerate(context)}
        messages = build_extraction_messages(name, text, list(refs.items()), self.max_entities, self.max_relations)
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

        entities, relations = self._plan(name, extraction)
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
