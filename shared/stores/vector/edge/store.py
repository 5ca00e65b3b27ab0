"""The Qdrant Edge adapter itself: one shard on local disk, mem0's vector store and the port."""

from __future__ import annotations

import builtins
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import StoreLocked
from shared.query.filters import holds
from shared.stores.vector.port import (
    EXPIRES_KEY,
    MONTH_KEY,
    SEQ_KEY,
    SPEAKER_KEY,
    TEXT_KEY,
    USER_KEY,
    Candidate,
    Candidates,
    Hints,
    Hit,
    Position,
    Tally,
    Twins,
    belongs,
    carry_derived,
    derive,
    matches,
    query_words,
)

if TYPE_CHECKING:
    from shared.contract import SearchFilters
    from shared.query.filters import Validity
from shared.stores.vector.edge import reads
from shared.stores.vector.edge.analysis import payload_indexes
from shared.stores.vector.edge.compaction import recover
from shared.stores.vector.edge.embedding import REEMBED_COMMAND, EmbeddingModelChanged, check_model, recorded
from shared.stores.vector.edge.filters import key_condition, mem0_filter, search_filter, translate, user_condition
from shared.stores.vector.edge.flushing import Flusher

logger = logging.getLogger(__name__)

_PAGE = 1000
# The BM25 list of a search is this many times deeper than each candidate list (see `candidates`).
KEYWORD_DEPTH = 2
SEARCH_THREADS = 1


def _unit(vector: Sequence[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array


def _match_any(key: str, values: Sequence[str]) -> Any:
    from qdrant_edge import FieldCondition, MatchAny

    return FieldCondition(key=key, match=MatchAny(list(values)))


def _nearest(vector: Sequence[float]) -> Any:
    from qdrant_edge import Query

    return Query.Nearest(_unit(vector).tolist())


class EdgeVectorStore:
    """mem0's vector store and the service's port over one Qdrant Edge shard."""

    kind = "edge"

    def __init__(self, path: Path, collection_name: str, dims: int, embedding_model: str | None = None) -> None:
        """`embedding_model`, when given, is compared with the model recorded in the shard and recorded
        where none is (`embedding.py`): the service passes it; tools that copy vectors as stored do not."""
        from qdrant_edge import Distance, EdgeConfig, EdgeShard, EdgeVectorParams, Memory

        self.path = Path(path)
        self.collection_name = collection_name
        self.dims = dims
        self._seq_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.flusher = Flusher()
        # Vectors and payloads are kept in memory (Cached), about 1.5 KB + the text per memory. Left
        # on disk (Cold), a user's first search on a worker pays the page faults of that user's
        # payloads (measured at 10,000 memories: 7.1 ms instead of 1.9 ms for one query), the very
        # cost of a first search this engine is here to remove.
        # One search thread: the binding holds the GIL for the whole of every engine call, so a
        # worker runs one engine call at a time whatever its request threads, and a pool that splits
        # that call over segments only adds hand-offs and spinning threads (measured on 2 cores,
        # embedding + candidates + neighbours from 8 threads: 170-180 searches/s with one thread,
        # 130-141/s with the default pool, 1 ms less CPU per search).
        config = EdgeConfig(
            vectors=EdgeVectorParams(size=dims, distance=Distance.Cosine, memory=Memory.Cached),
            payload_memory=Memory.Cached,
            max_search_threads=SEARCH_THREADS,
        )
        recover(self.path)  # a compaction a crash interrupted is finished or undone first
        try:
            if (self.path / "edge_config.json").exists():
                self.shard = EdgeShard.load(str(self.path), config)  # checks the vector size too
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self.shard = EdgeShard.create(str(self.path), config)
        except Exception as error:
            raise _explain(error, self.path, collection_name, dims) from error
        self._ensure_indexes()
        if embedding_model is not None:
            try:
                check_model(self.path, collection_name, embedding_model, dims, self.count_all)
            except BaseException:
                self.close()
                raise

    def _ensure_indexes(self) -> None:
        from qdrant_edge import UpdateOperation

        wanted = payload_indexes()
        present = set(self.shard.info().payload_schema)
        for name, params in wanted.items():
            if name not in present:
                self.shard.update(UpdateOperation.create_field_index(name, params))

    # --- mem0's interface --------------------------------------------------------------------
    def create_col(self, name: str, vector_size: int, distance: Any = None) -> None:
        """The shard is the collection; it is created at construction."""

    def insert(
        self, vectors: list[Any], payloads: list[dict[str, Any]] | None = None, ids: list[str] | None = None
    ) -> None:
        from qdrant_edge import Point, UpdateOperation

        payloads = payloads or [{} for _ in vectors]
        ids = ids or [str(uuid.uuid4()) for _ in vectors]
        by_user: dict[str, list[int]] = {}
        for position, payload in enumerate(payloads):
            by_user.setdefault(str(payload.get(USER_KEY) or ""), []).append(position)
        locks = [self._seq_lock(user) for user in sorted(by_user)]
        for lock in locks:
            lock.acquire()
        try:
            numbered = list(payloads)
            for user, positions in by_user.items():
                start = self.max_seq(user) + 1 if user else 0
                for offset, position in enumerate(positions):
                    numbered[position] = derive(payloads[position], start + offset if user else None)
            points = [Point(str(i), _unit(v).tolist(), p) for i, v, p in zip(ids, vectors, numbered, strict=True)]
            self._write(UpdateOperation.upsert_points(points))
        finally:
            for lock in locks:
                lock.release()

    def _seq_lock(self, user_id: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._seq_locks.get(user_id)
            if lock is None:
                if len(self._seq_locks) > 10_000:
                    self._seq_locks = {u: lk for u, lk in self._seq_locks.items() if lk.locked()}
                lock = self._seq_locks[user_id] = threading.Lock()
            return lock

    def max_seq(self, user_id: str) -> int:
        """The highest `_seq` of the user (-1 when none): one ordered lookup in the engine."""
        from qdrant_edge import Direction, Filter, OrderBy, QueryRequest

        found = self.shard.query(
            QueryRequest(
                limit=1,
                query=OrderBy(SEQ_KEY, Direction.Desc),
                filter=Filter(must=[user_condition(user_id)]),
                with_payload=False,
            )
        )
        if not found or found[0].order_value is None:
            return -1
        return int(found[0].order_value)

    def search(
        self, query: str, vectors: Sequence[float], top_k: int = 5, filters: dict[str, Any] | None = None
    ) -> list[Hit]:
        from qdrant_edge import Query, QueryRequest

        found = self.shard.query(
            QueryRequest(
                limit=top_k,
                query=Query.Nearest(_unit(vectors).tolist()),
                filter=mem0_filter(filters),
                with_payload=True,
            )
        )
        return [Hit(str(p.id), dict(p.payload or {}), float(p.score)) for p in found]

    def keyword_search(self, query: str, top_k: int = 5, filters: dict[str, Any] | None = None) -> None:
        return None  # the service's search uses `candidates`; mem0's hybrid path stays off

    def get(self, vector_id: str) -> Hit | None:
        found = self.shard.retrieve([vector_id], with_payload=True, with_vector=False)
        if not found:
            return None
        return Hit(str(found[0].id), dict(found[0].payload or {}))

    def update(
        self, vector_id: str, vector: Sequence[float] | None = None, payload: dict[str, Any] | None = None
    ) -> None:
        from qdrant_edge import Point, PointVectors, UpdateMode, UpdateOperation

        if payload is not None:
            old = self.get(vector_id)
            if old is None:
                return  # deleted: an update never brings a memory back (the shard would refuse a payload-only one)
            new_payload = carry_derived(payload, old.payload)
            if vector is not None:
                # Update only: a memory deleted by a racing request is not brought back by a rewrite.
                point = Point(vector_id, _unit(vector).tolist(), new_payload)
                self._write(UpdateOperation.upsert_points([point], update_mode=UpdateMode.UpdateOnly))
                return
            operation = UpdateOperation.overwrite_payload([vector_id], new_payload)
        elif vector is not None:
            operation = UpdateOperation.update_vectors([PointVectors(vector_id, _unit(vector).tolist())])
        else:
            return
        try:
            self._write(operation)
        except Exception:  # "No point with id": deleted meanwhile, and nothing is brought back
            if self.get(vector_id) is not None:
                raise

    def delete(self, vector_id: str, user_id: str | None = None) -> None:
        from qdrant_edge import UpdateOperation

        self._write(UpdateOperation.delete_points([vector_id]))

    def list(self, filters: dict[str, Any] | None = None, top_k: int | None = None) -> list[list[Hit]]:
        return [list(self._scroll(mem0_filter(filters), top_k))]

    def list_cols(self) -> builtins.list[str]:
        return [self.collection_name]

    def delete_col(self) -> None:
        from qdrant_edge import Filter, UpdateOperation

        self._write(UpdateOperation.delete_points_by_filter(Filter(must=[])))

    def _write(self, operation: Any) -> None:
        self.shard.update(operation)
        self.flusher.wrote(self.shard)

    def col_info(self) -> dict[str, Any]:
        info = self.shard.info()
        return {"name": self.collection_name, "points": info.points_count, "segments": info.segments_count}

    def reset(self) -> None:
        self.delete_col()

    # --- the port ----------------------------------------------------------------------------
    def candidates(
        self,
        user_id: str,
        vector: Sequence[float],
        text: str,
        limit: int,
        filters: SearchFilters | None,
        hints: Hints | None = None,
    ) -> Candidates:
        """One engine batch: every candidate with its cosine and payload, the keyword scores, the ceiling.

        - The first request re-scores by the query vector the union of its prefetches (the `limit`
          nearest memories, the `limit` best BM25 matches, and the nearest memories of a month or a
          speaker the query names): the exact cosine of every candidate, whichever list found it.
        - The second is the BM25 list itself, `KEYWORD_DEPTH` times deeper than the prefetch and
          without payloads: the keyword score of every candidate it holds. A dense candidate below
          that depth counts as holding no query word (its BM25 is under the depth's last score).
          The engine cannot re-score prefetches by BM25 over a text index, or this would be exact.
        - One request per query word (limit 1, no payload): the best BM25 that word reaches among
          the user's memories. Their sum is the keyword ceiling.
        """
        from qdrant_edge import Filter, Prefetch, QueryBatchRequest, QueryRequest, TextQuery

        nearest = _nearest(vector)
        only = search_filter(user_id, filters)
        bm25 = self._bm25(user_id, text)
        prefetches = [
            Prefetch(limit=limit, query=nearest, filter=only),
            Prefetch(limit=limit, query=bm25.query, params=bm25.params, filter=only),
        ]
        # The nearest memories of a month or a speaker the query names, however far their words are.
        for key, values in ((MONTH_KEY, hints.months if hints else ()), (SPEAKER_KEY, hints.speakers if hints else ())):
            if values:
                named = Filter(must=[only, _match_any(key, values)])
                prefetches.append(Prefetch(limit=max(1, limit // 2), query=nearest, filter=named))
        depth = KEYWORD_DEPTH * limit
        user_only = bm25.params.idf.corpus
        words = query_words(text)
        union_size = sum(p.limit for p in prefetches)
        requests = [
            QueryRequest(limit=union_size, query=nearest, prefetches=prefetches, with_payload=True),
            QueryRequest(limit=depth, query=bm25.query, params=bm25.params, filter=only),
            *(QueryRequest(limit=1, query=TextQuery(TEXT_KEY, w), params=bm25.params, filter=user_only) for w in words),
        ]
        union, keyword, *probes = self.shard.query_batch(QueryBatchRequest(requests))
        keyword_scores = {str(p.id): float(p.score) for p in keyword}
        condition = filters.condition() if filters is not None else None
        found: list[Candidate] = []
        for point in union:
            payload = point.payload or {}
            if belongs(payload, user_id) and (condition is None or holds(condition, payload)):
                memory_id = str(point.id)
                found.append(Candidate(memory_id, payload, float(point.score), keyword_scores.get(memory_id, 0.0)))
        return Candidates(
            found,
            keyword_exhaustive=len(keyword) < depth,
            keyword_ceiling=sum(float(best[0].score) for best in probes if best),
        )

    def _bm25(self, user_id: str, text: str) -> _Bm25:
        """BM25 over the memory text with the user's own statistics (idf over the user's memories).

        The idf corpus is the user alone, without "not expired": an expired memory still counts until
        the hourly purge erases it, and the corpus is counted per query word, where the expiry
        condition tripled the cost (measured at 3,000 memories: 2.0 ms for six words, 0.55 ms).
        """
        from qdrant_edge import Filter, IdfParams, SearchParams, TextQuery

        corpus = Filter(must=[key_condition(user_id)])
        return _Bm25(TextQuery(TEXT_KEY, text), SearchParams(idf=IdfParams(corpus=corpus)))

    def neighbours(
        self,
        user_id: str,
        seqs: Sequence[int],
        vector: Sequence[float],
        text: str = "",
        validity: Validity | None = None,
    ) -> builtins.list[Candidate]:
        from qdrant_edge import FieldCondition, Filter, MatchAny, QueryBatchRequest, QueryRequest

        wanted = sorted({int(s) for s in seqs if s >= 0})
        if not wanted:
            return []
        live = search_filter(user_id, None, validity=validity)
        only = Filter(must=[live, FieldCondition(key=SEQ_KEY, match=MatchAny(wanted))])
        room = 2 * len(wanted)  # an occasional duplicate `_seq` (two workers at once) still fits
        requests = [QueryRequest(limit=room, query=_nearest(vector), filter=only, with_payload=True)]
        if text.strip():
            bm25 = self._bm25(user_id, text)
            requests.append(QueryRequest(limit=room, query=bm25.query, params=bm25.params, filter=only))
        near, *keyword = self.shard.query_batch(QueryBatchRequest(requests))
        items: dict[str, Candidate] = {}
        for point in near:
            payload = point.payload or {}
            if belongs(payload, user_id):
                memory_id = str(point.id)
                items[memory_id] = Candidate(memory_id, payload, float(point.score))
        for point in keyword[0] if keyword else ():
            item = items.get(str(point.id))
            if item is not None:
                item.keyword = float(point.score)
        return list(items.values())

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {
            str(r.id): dict(r.payload or {})
            for r in self.shard.retrieve(list(ids), with_payload=True, with_vector=False)
        }

    def list_user(
        self, user_id: str, limit: int | None = None, filters: SearchFilters | None = None, *, expired: bool = False
    ) -> builtins.list[Hit]:
        from qdrant_edge import Filter

        if expired:  # erasure reads the expired memories too
            only = Filter(must=[user_condition(user_id), translate(filters.condition() if filters else None)])
        else:
            only = search_filter(user_id, filters)
        rows = self._scroll(only, limit)
        return [row for row in rows if belongs(row.payload, user_id) and matches(row.payload, filters)]

    def count_user(self, user_id: str) -> int:
        from qdrant_edge import CountRequest

        return int(self.shard.count(CountRequest(exact=True, filter=search_filter(user_id, None))))

    def page_user(
        self, user_id: str, limit: int, before: Position | None = None, filters: SearchFilters | None = None
    ) -> builtins.list[Hit]:
        return reads.page(self, user_id, limit, before, filters)

    def tally_user(self, user_id: str) -> Tally:
        return reads.tally(self, user_id)

    def twins(self, user_id: str, scope: str, keys: Sequence[str], vectors: Sequence[Sequence[float]]) -> Twins:
        return reads.twins(self, user_id, scope, keys, vectors)

    def expired_points(self, now: float, limit: int) -> builtins.list[Hit]:
        """Up to `limit` memories (of any user) expired at `now`: one range query on `_expires`."""
        from qdrant_edge import FieldCondition, Filter, RangeFloat

        return builtins.list(
            self._scroll(Filter(must=[FieldCondition(key=EXPIRES_KEY, range=RangeFloat(lte=now))]), limit)
        )

    def count_all(self) -> int:
        from qdrant_edge import CountRequest

        return int(self.shard.count(CountRequest(exact=True)))

    def ping(self) -> dict[str, Any]:
        info = self.shard.info()
        return {"points": info.points_count, "segments": info.segments_count}

    def close(self) -> None:
        shard = getattr(self, "shard", None)
        if shard is not None:
            try:
                shard.flush()
            finally:
                shard.close()
            self.shard = None  # type: ignore[assignment]

    def _scroll(self, only: Any, limit: int | None, payload: Any = True) -> Iterable[Hit]:
        """The points passing `only`, at most `limit`, with their payload (`payload`: the fields to read)."""
        from qdrant_edge import ScrollRequest

        remaining = limit if limit is not None else None
        offset = None
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            points, offset = self.shard.scroll(
                ScrollRequest(offset=offset, limit=page, filter=only, with_payload=payload, with_vector=False)
            )
            for point in points:
                yield Hit(str(point.id), dict(point.payload or {}))
            if remaining is not None:
                remaining -= len(points)
            if offset is None or not points:
                return


@dataclass(frozen=True)
class _Bm25:
    query: Any
    params: Any


def _explain(error: Exception, path: Path, collection_name: str, dims: int) -> Exception:
    """The engine's refusals to open a shard, as configuration problems that name the fix."""
    text = str(error)
    if "WouldBlock" in text:
        return StoreLocked(
            f"the embedded store {path} (under DATA_DIR) is open in another process: one process owns an "
            "embedded store at a time. Stop that process, give this one its own DATA_DIR, or use a server "
            "store (QDRANT_URL, or VECTOR_STORE=chroma) for several workers"
        )
    if "vector size" in text or "Incompatible" in text:
        found = recorded(path) or {}
        model = f" of {found['model']}" if found.get("model") else ""
        return EmbeddingModelChanged(
            f"collection '{collection_name}' at {path} holds vectors{model} of another size than the configured "
            f"embedder's {dims} ({text}): stop the service and run `{REEMBED_COMMAND}` to re-embed them "
            "with the configured model, or use another COLLECTION_NAME for this embedder (or set EMBEDDING_DIMS "
            "to match)"
        )
    return error
