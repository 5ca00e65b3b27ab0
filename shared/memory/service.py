"""The memory service: every memory operation of the API, scoped to one user.

mem0 (behind `MemoryEngine`, shared/memory/mem0_engine.py) updates a memory's text; every add is
the batch path here (one embedding, one duplicate check, one write); learning from a turn is ours
(learning.py). This layer owns the rules: by-id calls are checked against the owner first, adds
skip duplicates (dedupe.py), a memory ends when another supersedes it (validity.py), erasure
removes a text from every store that holds it, lists and exports are pages (listing.py), counts
and stats are counted by the engine, store outages surface as `BackendUnavailable`. Collaborators
are given typed to the constructor (shared/factory.py builds them; tests/fixtures has in-memory ones)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from shared.ai.embeddings import Embedder
from shared.ai.quota import bills_scope
from shared.context import expiration_text, iso_utc
from shared.contract import MemoryInput, MemoryRecord, MemoryResults, MemoryStats, SearchFilters, scope_filters
from shared.errors import Forbidden, NotFound
from shared.memory import dedupe, validity
from shared.memory.expiry import purge_expired
from shared.memory.learning import JsonLlm, graph_write, learn_from_text
from shared.memory.listing import Page, memory_page
from shared.memory.mem0_engine import user_scope_part
from shared.memory.outages import vector_store_calls as vector_store_calls  # where callers find it
from shared.memory.writes import batch_payloads
from shared.observability import meters
from shared.query.filters import Validity
from shared.scope import Scope, as_scope
from shared.settings import Settings
from shared.stores.vector.port import VectorStore, belongs, expired
from shared.stores.vector.records import record_from_payload

if TYPE_CHECKING:
    from shared.graph.store import GraphReadResult
    from shared.memory.mem0_engine import MemoryEngine
    from shared.memory.ports import MemoryGraph
    from shared.search.hybrid import HybridSearcher
    from shared.stores.state.erasure import ErasureLedger
    from shared.stores.state.events import EventStore
    from shared.stores.state.history import HistoryRow, HistoryStore
    from shared.stores.state.sessions import SessionStore, Turn

logger = logging.getLogger(__name__)
_SCAN_PAGE = 1000


def is_valid_memory_id(memory_id: str) -> bool:
    try:
        uuid.UUID(memory_id)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def _rows(listed: Any) -> list[Any]:
    """mem0's adapters return list() results flat, nested once, or as (points, next_offset)."""
    if isinstance(listed, tuple | list) and listed and isinstance(listed[0], list | tuple):
        return list(listed[0])
    return list(listed or [])


class MemoryService:
    """Memory operations for the API. Every method takes the acting scope (shared/scope.py: the
    tenant and the user; a plain user id where there is no tenancy) and never crosses it. Stores
    are addressed by the scope's storage key; what goes back to the caller names the plain user."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: VectorStore,
        embedder: Embedder,
        searcher: HybridSearcher,
        engine: MemoryEngine,
        history: HistoryStore,
        sessions: SessionStore,
        events: EventStore,
        erasure: ErasureLedger,
        graph: MemoryGraph | None,
        llm: JsonLlm,
    ) -> None:
        self.settings = settings
        self.store = store  # the memories: the service reads and erases here, mem0 writes here
        self.embedder = embedder
        self.searcher = searcher
        self.engine = engine  # mem0: raw adds and updates (imported on first use)
        self.history = history  # every memory's change rows and mem0's message log
        self.sessions = sessions  # chat turns: erased and exported with the user
        self.events = events  # ingestion events, whose inputs hold texts: erased with the user
        self.erasure = erasure  # the users' erasure epochs: moved first when a user is erased
        self.graph = graph  # None when GRAPH_STORE=none
        self.llm = llm  # learning's extraction and decision calls (shared/memory/learning.py)

    # --- writes (their model calls are charged to the scope's tenant: shared/ai/quota.py) -------
    @bills_scope
    def add_memory(
        self,
        scope: Scope | str,
        content: str,
        metadata: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        run_id: str | None = None,
        expiration_date: date | None = None,
        supersedes: Sequence[str] | None = None,
        allow_duplicates: bool = False,
    ) -> MemoryRecord:
        """Store `content` as given (no LLM rewrite), superseding `supersedes`: the batch path with one
        item (one embedding serves the duplicate check and the write); a duplicate of a current
        memory is that memory (dedupe.py)."""
        scope = as_scope(scope)
        item = MemoryInput(content=content, metadata=metadata, expiration_date=expiration_date, supersedes=supersedes)
        added = self._add(scope, [item], None, agent_id, run_id, allow_duplicates, "add")
        if added.duplicate[0]:  # the memory that already says it
            return dedupe.DuplicateRecord(**self._owned(added[0], scope).model_dump())
        now = iso_utc()
        return MemoryRecord(
            id=added[0],
            memory=content,
            user_id=str(scope.user_id),
            agent_id=agent_id,
            run_id=run_id,
            expiration_date=expiration_text(expiration_date),
            metadata=dict(metadata or {}),
            created_at=now,
            updated_at=now,
            valid_from=now,
            supersedes=list(dict.fromkeys(supersedes)) if supersedes else None,
        )

    @bills_scope
    def add_memories(
        self,
        scope: Scope | str,
        items: Sequence[MemoryInput],
        ids: Sequence[str] | None = None,
        *,
        agent_id: str | None = None,
        run_id: str | None = None,
        allow_duplicates: bool = False,
    ) -> list[str]:
        """One embedding call, one duplicate check (dedupe.py; an existing id per duplicate), one vector store
        write, one history write; if that fails the vectors are removed again: a failed batch leaves nothing.
        `ids` (one per item) are given by an ingestion event, whose redo writes the same memories again."""
        meters.batch_size(len(items), "batch_add")
        return self._add(as_scope(scope), items, ids, agent_id, run_id, allow_duplicates, "batch_add")

    def _add(
        self,
        scope: Scope,
        items: Sequence[MemoryInput],
        ids: Sequence[str] | None,
        agent_id: str | None,
        run_id: str | None,
        allow_duplicates: bool,
        source: str,
    ) -> dedupe.Added:
        ids = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in items]
        self.check_supersedes(scope, [(item.supersedes, i) for item, i in zip(items, ids, strict=True)])
        vectors = self.embedder.embed_batch([item.content for item in items], "add")
        batch = dedupe.check_batch(self, scope.key, items, vectors, ids, agent_id, run_id, allow_duplicates)
        items, vectors, ids = batch.keep(items), batch.keep(vectors), batch.keep(ids)
        texts, now = [item.content for item in items], iso_utc()
        payloads = batch_payloads(scope, items, now, agent_id, run_id)
        row: HistoryRow = {"old_memory": None, "event": "ADD", "created_at": now, "updated_at": now, "role": "user"}
        history = [{**row, "memory_id": mid, "new_memory": text} for mid, text in zip(ids, texts, strict=True)]
        if ids:  # all duplicates: nothing to write
            with vector_store_calls():
                self.store.insert(vectors=vectors, ids=ids, payloads=payloads)
        try:
            self.history.batch_add_history(history)
        except Exception:
            logger.exception("history write failed; removing the %d memories just inserted", len(ids))
            self._remove_quietly(ids)
            raise
        self._settle(ids)
        for memory_id, item in zip(ids, items, strict=True):
            if item.supersedes:
                self.supersede(scope, item.supersedes, memory_id)
        meters.memories_added(len(ids), source)
        return batch.answer

    def supersede(self, scope: Scope | str, old_ids: Sequence[str], new_id: str, *, at: str | None = None) -> None:
        """Each old memory (the scope's, current) ends at `at` (or now), replaced by `new_id` (validity.py)."""
        validity.supersede(self.store, self.history, as_scope(scope), old_ids, new_id, at)

    def invalidate(self, scope: Scope | str, ids: Sequence[str], *, at: str | None = None) -> None:
        """Each memory (the scope's) ends at `at` (or now), with no successor (validity.py)."""
        validity.invalidate(self.store, self.history, as_scope(scope), ids, at)

    def check_supersedes(self, scope: Scope | str, lists: Sequence[tuple[Sequence[str] | None, str | None]]) -> None:
        """404 (unknown, foreign) or 422 (not current) for what adds would supersede, before any write."""
        validity.check_supersedes(self.store, as_scope(scope), lists)

    def _settle(self, ids: list[str]) -> None:
        """After an add: the history rows of memories deleted meanwhile (the deletion's history passes
        may have run before the rows were written) are erased; live ones are the deletion's to erase."""
        with vector_store_calls():
            live = self.store.fetch(ids)
        if gone := [memory_id for memory_id in ids if memory_id not in live]:
            self.history.erase_memories(gone)

    def _remove_quietly(self, ids: Sequence[str]) -> None:
        for memory_id in ids:
            try:
                self.store.delete(vector_id=memory_id)
            except Exception:
                logger.exception("could not remove memory %s while undoing a failed batch", memory_id)

    @bills_scope
    def update_memory(
        self, memory_id: str, content: str, metadata: dict[str, Any] | None, scope: Scope | str | None = None
    ) -> MemoryRecord:
        """Replace the text (re-embedded) and merge `metadata` into the memory's metadata. A racing
        delete wins: no store's update recreates a memory, and if the memory is gone once the update
        is done, its history goes too (mem0's row may follow the deletion's erasure): 404."""
        scope = as_scope(scope)
        self._owned(memory_id, scope)  # 404 or 403 before anything is changed
        with vector_store_calls():
            try:
                self.engine.update(memory_id, content, metadata)
            except Exception:
                if self.store.get(vector_id=memory_id) is None:  # deleted before mem0 read it: a 404
                    raise NotFound(f"memory {memory_id!r} not found") from None
                raise
            lost = self.store.get(vector_id=memory_id) is None
        if lost:
            self.history.erase_memories([memory_id])
            raise NotFound(f"memory {memory_id!r} not found")
        return self.get_memory(memory_id, scope)

    def delete_memory(self, memory_id: str, scope: Scope | str | None = None) -> str:
        scope = as_scope(scope)
        owner = self._owned(memory_id, scope)
        if self.graph is not None:
            # Graph first: if Neo4j is down this is a 503 before anything is deleted, and a retry
            # redoes the whole deletion (the graph step is idempotent; the memory still exists).
            self.graph.delete_memory(scope.as_user(owner.user_id).key, memory_id)
        self._erase([memory_id], scope.as_user(owner.user_id).key)
        return memory_id

    def delete_user_memories(self, scope: Scope | str, agent_id: str | None = None, run_id: str | None = None) -> int:
        """Erase the user: memories, graph, logged messages, sessions, events; work under way for the user
        is cancelled (stores/state/erasure.py). Returns how many memories were deleted. With `agent_id`
        and/or `run_id`, only the user's memories of that scope (and their part of the graph)."""
        user_id = as_scope(scope).key
        mem0_scope = scope_filters(agent_id, run_id)
        if mem0_scope is not None:
            return self._delete_scope(user_id, mem0_scope)
        self.erasure.advance(user_id)  # first: the barrier for work under way (stores/state/erasure.py)
        if self.graph is not None:
            self.graph.delete_user(user_id)
        deleted = 0
        seen: set[str] = set()
        while True:
            with vector_store_calls():
                listed = self.store.list_user(user_id, _SCAN_PAGE, None, expired=True)
                batch = [row for row in listed if row.id not in seen]
            self._erase([row.id for row in batch], user_id)
            seen.update(row.id for row in batch)
            deleted += len(batch)
            if len(batch) < _SCAN_PAGE:
                break
        # What else holds the user's words: the messages mem0 logged, the chat sessions and the
        # events' inputs. This runs even when no memory was left, so a retry finishes the erasure.
        self.history.erase_messages(user_scope_part(user_id))
        self.sessions.delete_user(user_id)
        self.events.delete_user(user_id)
        return deleted

    def erase_logged_messages(self, user_key: str) -> None:
        """The messages mem0 logged for the user (a cancelled learning's exchange among them)."""
        self.history.erase_messages(user_scope_part(user_key))

    def erase_memories(self, memory_ids: Sequence[str]) -> None:
        """Erase these memories if they exist (history, then vectors): an ingestion event's purge. What
        they had begun to supersede is current again first (validity.reopen)."""
        validity.reopen(self.store, self.history, list(memory_ids))
        self._erase(list(memory_ids))

    def _delete_scope(self, user_id: str, scope: SearchFilters) -> int:
        deleted = 0
        while True:
            with vector_store_calls():
                batch = self.store.list_user(user_id, _SCAN_PAGE, scope, expired=True)
            if self.graph is not None:
                for row in batch:
                    self.graph.delete_memory(user_id, str(row.id))
            self._erase([row.id for row in batch], user_id)
            deleted += len(batch)
            if len(batch) < _SCAN_PAGE:
                return deleted

    def purge_expired(self, now: float | None = None) -> int:
        """Erases every memory (of any user) expired at `now`, with its history and its graph part (expiry.py)."""
        return purge_expired(self.store, self.graph, self._erase, now)

    def _erase(self, memory_ids: list[str], owner: str | None = None) -> None:
        """Erases memories (of `owner`, a storage key, when one user owns them all): their history
        rows (every old and new text) first, then the memories. In that order, a failure between the
        two leaves memories that still exist and that a retry erases, never a deleted memory whose
        texts survive in its history (mem0's own delete writes one more row). The history is erased
        again once the memories are gone: an update's row may have followed the first pass."""
        if not memory_ids:
            return
        self.history.erase_memories(list(memory_ids))
        with vector_store_calls():
            for memory_id in memory_ids:
                self.store.delete(vector_id=memory_id, user_id=owner)
        self.history.erase_memories(list(memory_ids))

    def delete_where(self, scope: Scope | str, conditions: dict[str, Any]) -> int:
        """Delete the user's memories whose metadata matches every condition exactly."""
        user_id = as_scope(scope).key
        with vector_store_calls():
            listed = self.store.list(filters={"user_id": user_id, **conditions}, top_k=None)
            matching = [
                row
                for row in _rows(listed)
                if belongs(row.payload, user_id) and all(row.payload.get(k) == v for k, v in conditions.items())
            ]
        validity.reopen(self.store, self.history, [row.id for row in matching])  # a purge undoes supersession
        self._erase([row.id for row in matching], user_id)
        if self.graph is not None:
            for row in matching:
                self.graph.delete_memory(user_id, str(row.id))
        return len(matching)

    @bills_scope
    def learn_from_turn(
        self, scope: Scope | str, message: str, answer: str, tags: dict[str, Any], *, write_id: str
    ) -> list[str]:
        """What a turn teaches, reconciled with the user's memories (learning.py), then the graph learns
        as the write `write_id`. Memories stored carry `tags` (`forget_turn` finds them); returns their ids."""
        scope = as_scope(scope)
        then = graph_write(self.graph, scope, message, write_id)  # before any old memory is ended
        ids = learn_from_text(self, scope, message, tags, answer=answer, write_id=write_id, then=then).added
        meters.memories_added(len(ids), "chat")
        return ids

    def forget_turn(self, scope: Scope | str, tags: dict[str, Any], *, write_id: str) -> int:
        """Removes whatever a `learn_from_turn` attempt wrote, finished or not: the graph write
        `write_id`, then the memories carrying `tags` (with their history and graph support).
        Returns how many memories were removed."""
        scope = as_scope(scope)
        if self.graph is not None:
            from shared.graph.store import GraphWriteResult

            self.graph.revert_write(scope.key, GraphWriteResult(write_id=write_id, status="written"))
        return self.delete_where(scope, tags)

    # --- reads -------------------------------------------------------------------------------
    def get_memory(self, memory_id: str, scope: Scope | str | None = None) -> MemoryRecord:
        return self._owned(memory_id, as_scope(scope))

    def _owned(self, memory_id: str, scope: Scope) -> MemoryRecord:
        """The memory, if it exists in the scope's tenant and (when the scope names a user) belongs to that user.

        Another tenant's memory is "not found", exactly like a missing one (no existence oracle
        across tenants); another user's memory in the same tenant is 403, as without tenancy.
        """
        if not is_valid_memory_id(memory_id):
            raise NotFound(f"memory {memory_id!r} not found")
        with vector_store_calls():
            point = self.store.get(vector_id=memory_id)
        payload = (point.payload or {}) if point is not None else {}
        owner = scope.user_of(str(payload.get("user_id") or ""), payload) if payload.get("data") else None
        if point is None or owner is None or expired(payload):
            raise NotFound(f"memory {memory_id!r} not found")
        record = record_from_payload(str(point.id), payload).model_copy(update={"user_id": owner})
        if scope.user_id is not None and owner != scope.user_id:
            raise Forbidden(f"memory {memory_id!r} belongs to another user")
        return record

    def list_page(
        self,
        scope: Scope | str,
        agent_id: str | None = None,
        run_id: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        validity: Validity | None = None,
    ) -> Page[MemoryRecord]:
        """A page of the user's memories (of the agent and run scopes given, valid now unless `validity`
        says otherwise), newest first: at most `limit` (LIST_PAGE_SIZE by default), after `cursor`."""
        size = limit or self.settings.list_page_size
        return memory_page(self.store, as_scope(scope), size, cursor, scope_filters(agent_id, run_id, None, validity))

    def list_memories(
        self, scope: Scope | str, agent_id: str | None = None, run_id: str | None = None
    ) -> list[MemoryRecord]:
        """The first page of the user's memories (`list_page` without a cursor), newest first."""
        return self.list_page(scope, agent_id, run_id).items

    def search_memories(
        self,
        scope: Scope | str,
        query: str,
        limit: int,
        filters: SearchFilters | None = None,
        threshold: float | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        validity: Validity | None = None,
    ) -> list[MemoryRecord]:
        """The user's memories (of the agent and run scopes given; valid now unless `validity` says
        otherwise: shared/query/filters.py) most relevant to `query`, best first."""
        scope = as_scope(scope)
        filters = scope_filters(agent_id, run_id, filters, validity)
        with vector_store_calls():
            found = self.searcher.search(scope.key, query, limit, filters, threshold)
        return [record.model_copy(update={"user_id": scope.user_id}) for record in found]

    def search_with_relations(
        self,
        scope: Scope | str,
        query: str,
        limit: int,
        filters: SearchFilters | None = None,
        threshold: float | None = None,
        *,
        agent_id: str | None = None,
        run_id: str | None = None,
        validity: Validity | None = None,
    ) -> MemoryResults:
        """A search's answer: the memories, and the graph's relations when graph memory is on (a graph
        outage is a warning, never an error). What the search endpoint and its MCP tool return."""
        results = self.search_memories(scope, query, limit, filters, threshold, agent_id, run_id, validity)
        graph = self.search_relations(scope, query)
        if graph is None:
            return MemoryResults(results=results)
        warnings = [graph.warning] if graph.warning else None
        return MemoryResults(results=results, relations=graph.relations, warnings=warnings)

    def search_relations(self, scope: Scope | str, query: str, limit: int = 10) -> GraphReadResult | None:
        """Graph relations relevant to `query`, or None when graph memory is off.

        Never raises: a graph outage gives no relations and a warning, and memory search goes on.
        """
        if self.graph is None:
            return None
        scope = as_scope(scope)
        return self.graph.search_safe(scope.key, query, limit, self_name=scope.user_id)

    def user_graph(self, scope: Scope | str, include_history: bool = False) -> dict[str, Any] | None:
        if self.graph is None:
            return None
        graph: dict[str, Any] = self.graph.user_graph(as_scope(scope).key, include_history=include_history)
        return graph

    def stats(self, scope: Scope | str) -> MemoryStats:
        """Counts by creation day (UTC) and `metadata.category` ("other": none), by the engine (reads.py)."""
        scope = as_scope(scope)
        with vector_store_calls():
            tally = self.store.tally_user(scope.key)
        return MemoryStats(
            user_id=str(scope.user_id),
            total_memories=tally.total,
            date_distribution=dict(sorted(tally.days.items())),
            category_distribution=dict(tally.categories.most_common()),
        )

    def memory_history(self, memory_id: str, scope: Scope | str | None = None) -> list[HistoryRow]:
        self._owned(memory_id, as_scope(scope))
        return self.history.get_history(memory_id)

    def export_memories(
        self, scope: Scope | str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[dict[str, Any]]:
        """A page of all the user's memories (as `list_page`, superseded ones too), each with its change
        history: one history read for the page (portability requests)."""
        page = self.list_page(scope, limit=limit, cursor=cursor, validity=Validity.everything())
        histories = self.history.get_histories([record.id for record in page.items])
        items = [
            {**record.model_dump(mode="json", exclude_none=True), "history": histories.get(record.id, [])}
            for record in page.items
        ]
        return Page(items, page.next_cursor)

    def export_sessions(self, scope: Scope | str) -> dict[str, list[Turn]]:
        """The user's chat sessions by id (turns oldest first)."""
        return self.sessions.export_user(as_scope(scope).key)

    def count_memories(self, scope: Scope | str) -> int:
        """How many memories the user has (counted by the engine)."""
        with vector_store_calls():
            return self.store.count_user(as_scope(scope).key)

    def close(self) -> None:
        """Release the store (the embedded engine's folder lock with it) and the history."""
        self.store.close()
        self.history.close()
