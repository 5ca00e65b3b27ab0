"""The memory service: every memory operation of the API, scoped to one user.

mem0 does the storage work. This layer adds what mem0 leaves to its caller: by-id calls are
checked against the owner before anything is read back or changed, batch adds embed once and
write once, counts and stats are exact, and store outages surface as `BackendUnavailable`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.ai.embeddings import Embedder
from shared.contract import MemoryInput, MemoryRecord, MemoryStats, SearchFilters
from shared.errors import BackendUnavailable, Forbidden, NotFound, ServiceError
from shared.memory.records import record_from_payload
from shared.observability import meters
from shared.settings import Settings
from shared.stores.vector.port import VectorStore, belongs

if TYPE_CHECKING:
    from shared.search.hybrid import HybridSearcher

logger = logging.getLogger(__name__)


# Modules whose exceptions mean "the store could not answer", as opposed to a bug of ours.
_STORE_ERROR_MODULES = ("qdrant_client", "chromadb", "httpx", "httpcore", "urllib3", "requests", "grpc", "portalocker")
_SCAN_PAGE = 1000


def _is_store_outage(error: BaseException) -> bool:
    if isinstance(error, ServiceError):
        return False
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return any(type(e).__module__.startswith(_STORE_ERROR_MODULES) for e in _exception_chain(error))


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextmanager
def vector_store_calls() -> Iterator[None]:
    """Turns a vector store outage into a 503 instead of a 500."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as error:
        if _is_store_outage(error):
            logger.warning("vector store unavailable: %s: %s", type(error).__name__, error)
            raise BackendUnavailable("vector_store", "the vector store is unavailable; retry later") from error
        raise


def is_valid_memory_id(memory_id: str) -> bool:
    try:
        uuid.UUID(memory_id)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


def _rows(listed: Any) -> list[Any]:
    """mem0's adapters return list() results flat, nested once, or as (points, next_offset)."""
    if isinstance(listed, tuple | list) and listed and isinstance(listed[0], list | tuple):
        return list(listed[0])
    return list(listed or [])


class MemoryService:
    """Memory operations for the API. Every method takes the acting user and never crosses users."""

    def __init__(
        self,
        memory: Any,
        store: VectorStore,
        embedder: Embedder,
        settings: Settings,
        searcher: HybridSearcher | None = None,
        graph: Any = None,
    ) -> None:
        self.memory = memory  # mem0's Memory, writing through `store`
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.searcher = searcher
        self.graph = graph  # shared.graph.GraphStore when GRAPH_STORE=neo4j
        self.sessions: Any = None  # the chat session store, erased with a user (set by the runtime)

    # --- writes ------------------------------------------------------------------------------
    def add_memory(self, user_id: str, content: str, metadata: dict[str, Any] | None = None) -> MemoryRecord:
        """Store `content` as given (no LLM rewrite) through mem0's own add path."""
        with vector_store_calls():
            result = self.memory.add(content, user_id=user_id, metadata=dict(metadata or {}), infer=False)
        added = result["results"][0]
        meters.memories_added(1, "add")
        now = utc_now()
        return MemoryRecord(
            id=str(added["id"]),
            memory=content,
            user_id=user_id,
            metadata=dict(metadata or {}),
            created_at=now,
            updated_at=now,
        )

    def add_memories(self, user_id: str, items: Sequence[MemoryInput]) -> list[str]:
        """One embedding call for the batch, one vector store write, one history write.

        If the history write fails the inserted vectors are removed again, so a failed batch
        leaves nothing behind.
        """
        texts = [item.content for item in items]
        meters.batch_size(len(texts), "batch_add")
        vectors = self.embedder.embed_batch(texts, "add")
        now = utc_now()
        ids = [str(uuid.uuid4()) for _ in items]
        payloads = []
        for item in items:
            payload: dict[str, Any] = dict(item.metadata or {})
            payload.update(
                {
                    "user_id": user_id,
                    "role": "user",
                    "data": item.content,
                    "hash": hashlib.md5(item.content.encode()).hexdigest(),
                    "created_at": now,
                    "updated_at": now,
                    # One instant for the whole batch; the store numbers the memories in this order.
                }
            )
            payloads.append(payload)
        history = [
            {
                "memory_id": mid,
                "old_memory": None,
                "new_memory": text,
                "event": "ADD",
                "created_at": now,
                "updated_at": now,
                "role": "user",
            }
            for mid, text in zip(ids, texts, strict=True)
        ]
        with vector_store_calls():
            self.store.insert(vectors=vectors, ids=ids, payloads=payloads)
        try:
            self.memory.db.batch_add_history(history)
        except Exception:
            logger.exception("history write failed; removing the %d memories just inserted", len(ids))
            self._remove_quietly(ids)
            raise
        meters.memories_added(len(ids), "batch_add")
        return ids

    def _remove_quietly(self, ids: Sequence[str]) -> None:
        for memory_id in ids:
            try:
                self.store.delete(vector_id=memory_id)
            except Exception:
                logger.exception("could not remove memory %s while undoing a failed batch", memory_id)

    def update_memory(
        self, memory_id: str, content: str, metadata: dict[str, Any] | None, user_id: str | None = None
    ) -> MemoryRecord:
        """Replace the text (re-embedded) and merge `metadata` into the memory's metadata."""
        self._owned(memory_id, user_id)  # 404 or 403 before anything is changed
        with vector_store_calls():
            try:
                self.memory.update(memory_id, text=content, metadata=dict(metadata) if metadata is not None else None)
            except Exception:
                # A delete racing this update removed the memory between the check and the write:
                # the update lost the race, which is a 404, not a failure of the service.
                if self.store.get(vector_id=memory_id) is None:
                    raise NotFound(f"memory {memory_id!r} not found") from None
                raise
        return self.get_memory(memory_id, user_id)

    def delete_memory(self, memory_id: str, user_id: str | None = None) -> str:
        owner = self._owned(memory_id, user_id)
        if self.graph is not None:
            # Graph first: if Neo4j is down this is a 503 before anything is deleted, and a retry
            # redoes the whole deletion (the graph step is idempotent; the memory still exists).
            self.graph.delete_memory(owner.user_id, memory_id)
        self._erase([memory_id])
        return memory_id

    def delete_user_memories(self, user_id: str) -> int:
        """Delete every memory of `user_id` (and the user's graph); returns how many memories were deleted."""
        if self.graph is not None:
            self.graph.delete_user(user_id)
        deleted = 0
        seen: set[str] = set()
        while True:
            with vector_store_calls():
                batch = [row for row in self.store.list_user(user_id, _SCAN_PAGE) if row.id not in seen]
            self._erase([row.id for row in batch])
            seen.update(row.id for row in batch)
            deleted += len(batch)
            if len(batch) < _SCAN_PAGE:
                break
        # What else holds the user's words: the messages mem0 logged and the chat sessions. This
        # runs even when no memory was left, so a retry after a failure finishes the erasure.
        erase_messages = getattr(self.memory.db, "erase_user_messages", None)
        if erase_messages is not None:
            erase_messages(user_id)
        if self.sessions is not None:
            self.sessions.delete_user(user_id)
        return deleted

    def _erase(self, memory_ids: list[str]) -> None:
        """Erases memories: their history rows (every old and new text) first, then the memories.

        In that order, a failure between the two leaves memories that still exist and that a
        retry erases, never a deleted memory whose texts survive in its history. mem0's own delete
        is not used: it writes one more history row holding the text.
        """
        if not memory_ids:
            return
        erase_history = getattr(self.memory.db, "erase_memories", None)
        if erase_history is not None:
            erase_history(list(memory_ids))
        with vector_store_calls():
            for memory_id in memory_ids:
                self.store.delete(vector_id=memory_id)

    def delete_where(self, user_id: str, conditions: dict[str, Any]) -> int:
        """Delete the user's memories whose metadata matches every condition exactly."""
        with vector_store_calls():
            listed = self.store.list(filters={"user_id": user_id, **conditions}, top_k=None)
            matching = [
                row
                for row in _rows(listed)
                if belongs(row.payload, user_id) and all(row.payload.get(k) == v for k, v in conditions.items())
            ]
        self._erase([row.id for row in matching])
        if self.graph is not None:
            for row in matching:
                self.graph.delete_memory(user_id, str(row.id))
        return len(matching)

    # --- reads -------------------------------------------------------------------------------
    def get_memory(self, memory_id: str, user_id: str | None = None) -> MemoryRecord:
        return self._owned(memory_id, user_id)

    def _owned(self, memory_id: str, user_id: str | None) -> MemoryRecord:
        """The memory, if it exists and (when `user_id` is given) belongs to that user."""
        if not is_valid_memory_id(memory_id):
            raise NotFound(f"memory {memory_id!r} not found")
        with vector_store_calls():
            point = self.store.get(vector_id=memory_id)
        if point is None or not (point.payload or {}).get("data"):
            raise NotFound(f"memory {memory_id!r} not found")
        record = record_from_payload(str(point.id), point.payload)
        if user_id is not None and record.user_id != user_id:
            raise Forbidden(f"memory {memory_id!r} belongs to another user")
        return record

    def list_memories(self, user_id: str) -> list[MemoryRecord]:
        """All of the user's memories, newest first (at most MAX_LIST_RESULTS)."""
        records = [
            record_from_payload(str(row.id), row.payload)
            for row in self._scan_user(user_id, self.settings.max_list_results)
        ]
        records.sort(key=lambda r: r.created_at or "", reverse=True)
        return records

    def search_memories(
        self,
        user_id: str,
        query: str,
        limit: int,
        filters: SearchFilters | None = None,
        threshold: float | None = None,
    ) -> list[MemoryRecord]:
        """The user's memories most relevant to `query`, best first."""
        if self.searcher is None:
            from shared.search.hybrid import HybridSearcher

            self.searcher = HybridSearcher(self.store, self.embedder, self.settings)
        with vector_store_calls():
            return self.searcher.search(user_id, query, limit, filters, threshold)

    def search_relations(self, user_id: str, query: str, limit: int = 10) -> Any:
        """Graph relations relevant to `query` (`GraphReadResult`), or None when graph memory is off.

        Never raises: a graph outage gives no relations and a warning, and memory search goes on.
        """
        if self.graph is None:
            return None
        return self.graph.search_safe(user_id, query, limit)

    def user_graph(self, user_id: str, include_history: bool = False) -> dict[str, Any] | None:
        if self.graph is None:
            return None
        graph: dict[str, Any] = self.graph.user_graph(user_id, include_history=include_history)
        return graph

    def stats(self, user_id: str) -> MemoryStats:
        """Counts by creation day (UTC) and by `metadata.category` ("other" when absent)."""
        by_day: Counter[str] = Counter()
        by_category: Counter[str] = Counter()
        total = 0
        for row in self._scan_user(user_id, None):
            payload = row.payload or {}
            total += 1
            created = str(payload.get("created_at") or "")
            by_day[_utc_day(created)] += 1
            category = payload.get("category")
            by_category[str(category) if category not in (None, "") else "other"] += 1
        return MemoryStats(
            user_id=user_id,
            total_memories=total,
            date_distribution=dict(sorted(by_day.items())),
            category_distribution=dict(by_category.most_common()),
        )

    def history(self, memory_id: str, user_id: str | None = None) -> list[dict[str, Any]]:
        self._owned(memory_id, user_id)
        rows: list[dict[str, Any]] = self.memory.db.get_history(memory_id)
        return rows

    def export_memories(self, user_id: str) -> list[dict[str, Any]]:
        """Every memory of the user with its change history, oldest first (portability requests)."""
        records = self.list_memories(user_id)
        records.reverse()
        exported = []
        for record in records:
            item = record.model_dump(mode="json", exclude_none=True)
            item["history"] = self.memory.db.get_history(record.id)
            exported.append(item)
        return exported

    def _scan_user(self, user_id: str, cap: int | None) -> list[Any]:
        """Every stored point of `user_id` (payloads only), up to `cap`."""
        with vector_store_calls():
            return [row for row in self.store.list_user(user_id, cap) if belongs(row.payload, user_id)]

    def count_memories(self, user_id: str) -> int:
        """How many memories the user has (counted by the engine)."""
        with vector_store_calls():
            return self.store.count_user(user_id)

    def close(self) -> None:
        """Release the store (the embedded engine's folder lock with it)."""
        self.store.close()


def _utc_day(timestamp: str) -> str:
    if not timestamp:
        return "unknown"
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp[:10]
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d")
