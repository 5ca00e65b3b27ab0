"""The Qdrant server adapter itself: mem0's vector store and the port over qdrant-client."""

from __future__ import annotations

import builtins
import contextlib
import logging
import math
import numbers
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

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
    belongs,
    carry_derived,
    derive,
    matches,
    query_words,
)

if TYPE_CHECKING:
    from shared.contract import SearchFilters
from shared.stores.vector.qdrant.filters import _mem0_conditions, _mem0_holds, _user_condition, search_filter, translate
from shared.stores.vector.qdrant.schema import (
    PAGE_SIZE,
    already_exists,
    check_vectors,
    ensure_indexes,
    is_local,
)

logger = logging.getLogger(__name__)


# --- vectors -------------------------------------------------------------------------------------
def _dense(vector: Any) -> builtins.list[float] | None:
    """The dense vector of a returned point: plain, or the unnamed one of a mem0 (dense + sparse) layout."""
    if isinstance(vector, Mapping):
        vector = vector.get("")
    if vector is None or isinstance(vector, models.SparseVector):
        return None
    return [float(x) for x in vector]


class _Query:
    """A query vector, normalised once so that each cosine is one dot product."""

    def __init__(self, vector: Sequence[float]) -> None:
        self.values = [float(x) for x in vector]
        array = np.asarray(self.values, dtype=np.float64)
        norm = float(np.linalg.norm(array))
        self._unit = array / norm if norm else array

    def cosine(self, other: Sequence[float]) -> float:
        array = np.asarray(other, dtype=np.float64)
        norm = float(np.linalg.norm(array))
        return float(self._unit @ array / norm) if norm else 0.0


class QdrantServerStore:
    """mem0's vector store and the port's hybrid calls over a Qdrant server (or local mode in tests)."""

    kind = "qdrant"

    def __init__(self, client: QdrantClient, collection_name: str, dims: int) -> None:
        self.client = client
        self.collection_name = collection_name
        self.dims = dims
        self.local = is_local(client)
        # Local mode keeps its state in plain Python structures without locks of its own; a server
        # serialises for us.
        self._guard: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.local else contextlib.nullcontext()
        )
        # One lock per user while someone holds it (weak values: users come and go).
        self._user_locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._user_locks_guard = threading.Lock()
        self._ensure_collection(collection_name, dims)

    # --- setup ---------------------------------------------------------------------------------
    def _ensure_collection(self, name: str, dims: int) -> None:
        with self._guard:
            if not self.client.collection_exists(name):
                try:
                    self.client.create_collection(
                        name, vectors_config=models.VectorParams(size=dims, distance=models.Distance.COSINE)
                    )
                except (UnexpectedResponse, ValueError) as error:
                    if not already_exists(error):  # another worker made it first: fine
                        raise
            info = self.client.get_collection(name)
            check_vectors(name, info, dims)
            ensure_indexes(self.client, self.local, name, info)

    # --- locks ---------------------------------------------------------------------------------
    def _user_lock(self, user_id: str) -> threading.Lock:
        with self._user_locks_guard:
            lock = self._user_locks.get(user_id)
            if lock is None:
                lock = threading.Lock()
                self._user_locks[user_id] = lock
            return lock

    @contextlib.contextmanager
    def _users_locked(self, user_ids: Sequence[str]) -> Iterator[None]:
        # Sorted, so two inserts over the same users never wait on each other in a cycle.
        with contextlib.ExitStack() as stack:
            for user_id in sorted(set(user_ids)):
                stack.enter_context(self._user_lock(user_id))
            yield

    def _max_seq(self, user_id: str) -> int:
        with self._guard:
            records, _ = self.client.scroll(
                self.collection_name,
                scroll_filter=models.Filter(must=[_user_condition(user_id)]),
                order_by=models.OrderBy(key=SEQ_KEY, direction=models.Direction.DESC),
                limit=1,
                with_payload=[SEQ_KEY],
                with_vectors=False,
            )
        for record in records:
            seq = (record.payload or {}).get(SEQ_KEY)
            if isinstance(seq, int | float) and not isinstance(seq, bool):
                return int(seq)
        return -1

    # --- mem0's interface ----------------------------------------------------------------------
    def create_col(self, name: str | None = None, vector_size: int | None = None, distance: Any = None) -> None:
        if distance is not None and str(distance).lower() not in {"cosine", str(models.Distance.COSINE).lower()}:
            raise ValueError("this adapter stores cosine vectors only")
        self._ensure_collection(name or self.collection_name, vector_size or self.dims)

    def insert(
        self,
        vectors: builtins.list[Any],
        payloads: builtins.list[dict[str, Any]] | None = None,
        ids: builtins.list[str] | None = None,
    ) -> None:
        if not vectors:
            return
        payloads = payloads if payloads is not None else [{} for _ in vectors]
        ids = ids if ids is not None else [str(uuid.uuid4()) for _ in vectors]
        if not len(vectors) == len(payloads) == len(ids):
            raise ValueError("insert needs as many payloads and ids as vectors")
        users = [p.get(USER_KEY) if isinstance(p.get(USER_KEY), str) else None for p in payloads]
        named = [u for u in users if u is not None]
        with self._users_locked(named):
            next_seq = {user: self._max_seq(user) + 1 for user in dict.fromkeys(named)}
            points = []
            for vector, payload, point_id, user in zip(vectors, payloads, ids, users, strict=True):
                seq = None
                if user is not None:
                    seq = next_seq[user]
                    next_seq[user] = seq + 1
                points.append(
                    models.PointStruct(
                        id=str(point_id), vector=[float(x) for x in vector], payload=derive(payload, seq)
                    )
                )
            with self._guard:
                self.client.upsert(self.collection_name, points=points, wait=True)

    def search(
        self, query: str, vectors: Sequence[float], top_k: int = 5, filters: dict[str, Any] | None = None
    ) -> builtins.list[Hit]:
        must, must_not = _mem0_conditions(filters)
        with self._guard:
            response = self.client.query_points(
                self.collection_name,
                query=[float(x) for x in vectors],
                query_filter=models.Filter(must=must or None, must_not=must_not or None),
                limit=top_k,
                with_payload=True,
            )
        return [
            Hit(id=str(p.id), payload=dict(p.payload or {}), score=float(p.score))
            for p in response.points
            if _mem0_holds(p.payload or {}, filters)
        ]

    def keyword_search(
        self, query: str, top_k: int = 5, filters: dict[str, Any] | None = None
    ) -> builtins.list[Hit] | None:
        """BM25 over the memory text (mem0 calls this beside `search`)."""
        if not query.strip():
            return []
        must, must_not = _mem0_conditions(filters)
        with self._guard:
            response = self.client.query_points(
                self.collection_name,
                query=models.TextQuery(text=query),
                using=TEXT_KEY,
                query_filter=models.Filter(must=must or None, must_not=must_not or None),
                limit=top_k,
                with_payload=True,
            )
        return [
            Hit(id=str(p.id), payload=dict(p.payload or {}), score=float(p.score))
            for p in response.points
            if _mem0_holds(p.payload or {}, filters)
        ]

    def get(self, vector_id: str) -> Hit | None:
        with self._guard:
            records = self.client.retrieve(self.collection_name, ids=[str(vector_id)], with_payload=True)
        if not records:
            return None
        return Hit(id=str(records[0].id), payload=dict(records[0].payload or {}))

    def update(
        self, vector_id: str, vector: Sequence[float] | None = None, payload: dict[str, Any] | None = None
    ) -> None:
        point_id = str(vector_id)
        if payload is not None:
            old = self.get(point_id)
            new = carry_derived(payload, old.payload if old else None)
            with self._guard:
                if vector is not None:
                    point = models.PointStruct(id=point_id, vector=[float(x) for x in vector], payload=new)
                    self.client.upsert(self.collection_name, points=[point], wait=True)
                else:
                    self.client.overwrite_payload(self.collection_name, payload=new, points=[point_id], wait=True)
        elif vector is not None:
            with self._guard:
                self.client.update_vectors(
                    self.collection_name,
                    points=[models.PointVectors(id=point_id, vector=[float(x) for x in vector])],
                    wait=True,
                )

    def delete(self, vector_id: str) -> None:
        with self._guard:
            self.client.delete(
                self.collection_name, points_selector=models.PointIdsList(points=[str(vector_id)]), wait=True
            )

    def list(
        self, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> builtins.list[builtins.list[Hit]]:
        must, must_not = _mem0_conditions(filters)
        hits = self._scroll(models.Filter(must=must or None, must_not=must_not or None), top_k)
        return [[hit for hit in hits if _mem0_holds(hit.payload, filters)]]

    def list_cols(self) -> models.CollectionsResponse:
        with self._guard:
            return self.client.get_collections()

    def delete_col(self) -> None:
        with self._guard:
            self.client.delete_collection(self.collection_name)

    def col_info(self) -> models.CollectionInfo:
        with self._guard:
            return self.client.get_collection(self.collection_name)

    def reset(self) -> None:
        self.delete_col()
        self._ensure_collection(self.collection_name, self.dims)

    # --- the port's own calls ------------------------------------------------------------------
    def candidates(
        self,
        user_id: str,
        vector: Sequence[float],
        text: str,
        limit: int,
        filters: SearchFilters | None,
        hints: Hints | None = None,
    ) -> Candidates:
        if limit <= 0:
            return Candidates()
        query = _Query(vector)
        engine_filter = search_filter(user_id, filters)
        requests = [models.QueryRequest(query=query.values, filter=engine_filter, limit=limit, with_payload=True)]
        if text.strip():  # an empty text query has no terms; skip it rather than send it
            requests.append(
                models.QueryRequest(
                    query=models.TextQuery(text=text),
                    using=TEXT_KEY,
                    filter=engine_filter,
                    params=self._bm25_params(user_id),
                    limit=limit,
                    with_payload=True,
                    with_vector=True,
                )
            )
        # The nearest memories of a month or a speaker the query names, however far their words are.
        named_requests = []
        for key, values in ((MONTH_KEY, hints.months if hints else ()), (SPEAKER_KEY, hints.speakers if hints else ())):
            if values:
                condition = models.FieldCondition(key=key, match=models.MatchAny(any=builtins.list(values)))
                named = models.Filter(must=[*(engine_filter.must or []), condition])
                named_requests.append(
                    models.QueryRequest(query=query.values, filter=named, limit=max(1, limit // 2), with_payload=True)
                )
        with self._guard:
            responses = self.client.query_batch_points(self.collection_name, requests=[*requests, *named_requests])
        dense = builtins.list(responses[0].points)
        keyword = responses[1].points if len(requests) > 1 else []
        for extra in responses[len(requests) :]:
            dense.extend(extra.points)

        found: dict[str, Candidate] = {}
        for point in dense:
            payload = dict(point.payload or {})
            if belongs(payload, user_id) and matches(payload, filters):
                found[str(point.id)] = Candidate(id=str(point.id), payload=payload, semantic=float(point.score))
        for point in keyword:
            payload = dict(point.payload or {})
            if not (belongs(payload, user_id) and matches(payload, filters)):
                continue
            point_id = str(point.id)
            if point_id in found:
                found[point_id].keyword = float(point.score)
                continue
            stored = _dense(point.vector)
            semantic = query.cosine(stored) if stored is not None else 0.0
            found[point_id] = Candidate(id=point_id, payload=payload, semantic=semantic, keyword=float(point.score))
        if len(keyword) >= limit:
            # The keyword list was cut: dense candidates outside it may still hold query words.
            self._score_keywords(user_id, text, [c for c in found.values() if c.keyword == 0.0])
        return Candidates(
            items=builtins.list(found.values()),
            keyword_exhaustive=len(keyword) < limit,
            keyword_ceiling=self._keyword_ceiling(user_id, text),
        )

    def _bm25_params(self, user_id: str) -> models.SearchParams | None:
        """The user's own BM25 statistics on a server; local mode refuses a corpus and counts globally."""
        if self.local:
            return None
        return models.SearchParams(idf=models.IdfCorpusParams(corpus=models.Filter(must=[_user_condition(user_id)])))

    def _score_keywords(self, user_id: str, text: str, items: Sequence[Candidate]) -> None:
        """Sets the BM25 score of each of `items` (0 stays for those holding no query word)."""
        if not items or not text.strip():
            return
        by_id = {c.id: c for c in items}
        only = models.Filter(must=[_user_condition(user_id), models.HasIdCondition(has_id=builtins.list(by_id))])
        with self._guard:
            points = self.client.query_points(
                self.collection_name,
                query=models.TextQuery(text=text),
                using=TEXT_KEY,
                query_filter=only,
                search_params=self._bm25_params(user_id),
                limit=len(by_id),
            ).points
        for point in points:
            item = by_id.get(str(point.id))
            if item is not None:
                item.keyword = float(point.score)

    def _keyword_ceiling(self, user_id: str, text: str) -> float:
        """The sum of the idf over the query words some memory holds (the user's own on a server).

        BM25 gives a memory holding a word once, at average length, that word's idf: a keyword score
        over this sum is the idf-weighted share of the query a memory covers. One count per word.
        """
        words = query_words(text)
        if not words:
            return 0.0
        scope = [] if self.local else [_user_condition(user_id)]
        with self._guard:
            total = self.client.count(
                self.collection_name, count_filter=models.Filter(must=scope) if scope else None, exact=True
            ).count
            ceiling = 0.0
            for word in words:
                held = models.Filter(
                    must=[*scope, models.FieldCondition(key=TEXT_KEY, match=models.MatchTextAny(text_any=word))]
                )
                df = self.client.count(self.collection_name, count_filter=held, exact=True).count
                if df:
                    ceiling += math.log(1 + (total - df + 0.5) / (df + 0.5))
        return ceiling

    def neighbours(
        self, user_id: str, seqs: Sequence[int], vector: Sequence[float], text: str = ""
    ) -> builtins.list[Candidate]:
        wanted = sorted(
            {int(s) for s in seqs if isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0}
        )
        if not wanted:
            return []
        query = _Query(vector)
        engine_filter = models.Filter(
            must=[search_filter(user_id, None), models.FieldCondition(key=SEQ_KEY, match=models.MatchAny(any=wanted))]
        )
        with self._guard:
            records, _ = self.client.scroll(
                self.collection_name,
                scroll_filter=engine_filter,
                # Room for the rare duplicate `_seq` two processes can write (see the module docstring).
                limit=2 * len(wanted),
                with_payload=True,
                with_vectors=True,
            )
        out = []
        for record in records:
            payload = dict(record.payload or {})
            if not belongs(payload, user_id) or payload.get(SEQ_KEY) not in wanted:
                continue
            stored = _dense(record.vector)
            out.append(
                Candidate(
                    id=str(record.id), payload=payload, semantic=query.cosine(stored) if stored is not None else 0.0
                )
            )
        out.sort(key=lambda c: c.payload[SEQ_KEY])
        self._score_keywords(user_id, text, out)
        return out

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        with self._guard:
            records = self.client.retrieve(self.collection_name, ids=[str(i) for i in ids], with_payload=True)
        return {str(r.id): dict(r.payload or {}) for r in records}

    def list_user(
        self, user_id: str, limit: int | None = None, filters: SearchFilters | None = None, *, expired: bool = False
    ) -> builtins.list[Hit]:
        if expired:  # erasure reads the expired memories too
            only = models.Filter(must=[_user_condition(user_id), translate(filters.condition() if filters else None)])
        else:
            only = search_filter(user_id, filters)
        hits = self._scroll(only, limit)
        return [hit for hit in hits if belongs(hit.payload, user_id) and matches(hit.payload, filters)]

    def count_user(self, user_id: str) -> int:
        with self._guard:
            result = self.client.count(self.collection_name, count_filter=search_filter(user_id, None), exact=True)
        return int(result.count)

    def expired_points(self, now: float, limit: int) -> builtins.list[Hit]:
        """Up to `limit` memories (of any user) expired at `now`: one range query on `_expires`."""
        only = models.Filter(must=[models.FieldCondition(key=EXPIRES_KEY, range=models.Range(lte=now))])
        return self._scroll(only, limit)

    def ping(self) -> dict[str, Any]:
        with self._guard:
            info = self.client.get_collection(self.collection_name)
        return {
            "kind": self.kind,
            "status": "ok",
            "collection": self.collection_name,
            "collection_status": str(info.status),
            "local_mode": self.local,
        }

    def close(self) -> None:
        self.client.close()

    # --- helpers -------------------------------------------------------------------------------
    def _scroll(self, engine_filter: models.Filter, limit: int | None) -> builtins.list[Hit]:
        """Payloads matching `engine_filter`, at most `limit` (None: all), a page per round trip."""
        hits: builtins.list[Hit] = []
        offset: models.ExtendedPointId | None = None
        while limit is None or len(hits) < limit:
            page = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(hits))
            with self._guard:
                records, offset = self.client.scroll(
                    self.collection_name,
                    scroll_filter=engine_filter,
                    limit=page,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
            hits.extend(Hit(id=str(r.id), payload=dict(r.payload or {})) for r in records)
            if offset is None:
                break
        return hits
