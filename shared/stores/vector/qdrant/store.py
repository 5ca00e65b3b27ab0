"""The Qdrant server adapter itself: mem0's vector store and the port over qdrant-client."""

from __future__ import annotations

import builtins
import contextlib
import logging
import numbers
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
    Position,
    Tally,
    Twins,
    belongs,
    carry_derived,
    derive,
    matches,
    user_filter_value,
)

if TYPE_CHECKING:
    from shared.contract import SearchFilters
    from shared.query.filters import Validity
from shared.stores.vector.qdrant import reads
from shared.stores.vector.qdrant.client import query_batch
from shared.stores.vector.qdrant.filters import _mem0_conditions, _mem0_holds, _user_condition, search_filter, translate
from shared.stores.vector.qdrant.keywords import SPARSE_KEY, document_vector, query_vector, term_vectors
from shared.stores.vector.qdrant.schema import (
    already_exists,
    check_layout,
    check_model,
    check_server_version,
    check_vectors,
    create_params,
    ensure_indexes,
    is_local,
)

logger = logging.getLogger(__name__)


# --- vectors -------------------------------------------------------------------------------------
def _dense(vector: Any) -> builtins.list[float] | None:
    """The dense vector of a returned point: plain, or the unnamed one beside the sparse vector(s)."""
    if isinstance(vector, Mapping):
        vector = vector.get("")
    if vector is None or isinstance(vector, models.SparseVector):
        return None
    return [float(x) for x in vector]


def _vectors(dense: Sequence[float], text: Any) -> dict[str, Any]:
    """A point's vectors: the dense one (unnamed) and the BM25 weights of its text, when it has words."""
    out: dict[str, Any] = {"": [float(x) for x in dense]}
    sparse = document_vector(text)
    if sparse is not None:
        out[SPARSE_KEY] = sparse
    return out


class QdrantServerStore:
    """mem0's vector store and the port's hybrid calls over a Qdrant server (or local mode in tests)."""

    kind = "qdrant"

    def __init__(
        self, client: QdrantClient, collection_name: str, dims: int, embedding_model: str | None = None
    ) -> None:
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
        self.server_version = None if self.local else check_server_version(client)
        self._ensure_collection(collection_name, dims, embedding_model)

    # --- setup ---------------------------------------------------------------------------------
    def _ensure_collection(self, name: str, dims: int, embedding_model: str | None = None) -> None:
        with self._guard:
            if not self.client.collection_exists(name):
                try:
                    self.client.create_collection(name, **create_params(dims))
                except (UnexpectedResponse, ValueError) as error:
                    if not already_exists(error):  # another worker made it first: fine
                        raise
            info = self.client.get_collection(name)
            check_vectors(name, info, dims)
            check_layout(name, info)
            check_model(self.client, name, info, embedding_model)
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
                stored = derive(payload, seq)
                points.append(
                    models.PointStruct(id=str(point_id), vector=_vectors(vector, stored.get(TEXT_KEY)), payload=stored)
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
        sparse = query_vector(query)
        if sparse is None:
            return []
        must, must_not = _mem0_conditions(filters)
        user = user_filter_value(filters)
        with self._guard:
            response = self.client.query_points(
                self.collection_name,
                query=sparse,
                using=SPARSE_KEY,
                query_filter=models.Filter(must=must or None, must_not=must_not or None),
                search_params=self._idf(user) if user is not None else None,
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
        """Rewrites a memory's vector, payload or both; a memory deleted meanwhile stays deleted.

        The point is written whole (dense vector, keyword vector of its text, payload) with
        `update_mode=update_only`: when a delete reached the engine first, the write is a no-op.
        """
        if vector is None and payload is None:
            return
        point_id = str(vector_id)
        with self._guard:
            records = self.client.retrieve(
                self.collection_name, ids=[point_id], with_payload=True, with_vectors=vector is None
            )
        if not records:
            return  # deleted: nothing to rewrite
        old = dict(records[0].payload or {})
        new = carry_derived(payload, old) if payload is not None else old
        dense = [float(x) for x in vector] if vector is not None else _dense(records[0].vector)
        if dense is None:
            raise ValueError(f"memory {point_id} has no dense vector to keep")
        point = models.PointStruct(id=point_id, vector=_vectors(dense, new.get(TEXT_KEY)), payload=new)
        with self._guard:
            self.client.upsert(
                self.collection_name, points=[point], update_mode=models.UpdateMode.UPDATE_ONLY, wait=True
            )

    def delete(self, vector_id: str, user_id: str | None = None) -> None:
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
        """One `query_batch_points` round trip, whatever the query:

        - the candidates: the dense nearest `limit`, the BM25 best `limit` and the nearest of each
          named month and speaker, as the prefetches of one request whose query is the dense
          vector, so every one of them comes back once with its cosine and its payload;
        - their BM25: the same prefetches under the sparse query (those holding no query word are
          absent: keyword 0);
        - the keyword ceiling: per query word, that word alone over the user's live memories,
          limit 1 (see `_ceiling`).
        """
        if limit <= 0:
            return Candidates()
        dense = [float(x) for x in vector]
        engine_filter = search_filter(user_id, filters)
        sparse = query_vector(text)
        idf = self._idf(user_id)
        prefetch = [models.Prefetch(query=dense, filter=engine_filter, limit=limit)]
        if sparse is not None:
            prefetch.append(
                models.Prefetch(query=sparse, using=SPARSE_KEY, filter=engine_filter, params=idf, limit=limit)
            )
        # The nearest memories of a month or a speaker the query names, however far their words are.
        for key, values in ((MONTH_KEY, hints.months if hints else ()), (SPEAKER_KEY, hints.speakers if hints else ())):
            if values:
                condition = models.FieldCondition(key=key, match=models.MatchAny(any=builtins.list(values)))
                named = models.Filter(must=[*(engine_filter.must or []), condition])
                prefetch.append(models.Prefetch(query=dense, filter=named, limit=max(1, limit // 2)))
        pool = sum(p.limit or 0 for p in prefetch)
        requests = [
            models.QueryRequest(prefetch=prefetch, query=dense, filter=engine_filter, limit=pool, with_payload=True)
        ]
        terms: builtins.list[models.SparseVector] = []
        if sparse is not None:
            requests.append(
                models.QueryRequest(
                    prefetch=prefetch, query=sparse, using=SPARSE_KEY, filter=engine_filter, params=idf, limit=pool
                )
            )
            terms = term_vectors(sparse)
            live = search_filter(user_id, None)
            requests.extend(
                models.QueryRequest(query=term, using=SPARSE_KEY, filter=live, params=idf, limit=1) for term in terms
            )
        with self._guard:
            responses = query_batch(self.client, self.collection_name, requests)

        found: dict[str, Candidate] = {}
        for point in responses[0].points:
            payload = dict(point.payload or {})
            if belongs(payload, user_id) and matches(payload, filters):
                found[str(point.id)] = Candidate(id=str(point.id), payload=payload, semantic=float(point.score))
        held = 0
        if sparse is not None:
            for point in responses[1].points:
                if point.score <= 0.0:
                    continue
                held += 1
                item = found.get(str(point.id))
                if item is not None:
                    item.keyword = float(point.score)
        return Candidates(
            items=builtins.list(found.values()),
            # Every memory holding a query word is among the union's (the BM25 prefetch was not cut)
            # exactly when fewer than `limit` of the union hold one.
            keyword_exhaustive=held < limit,
            keyword_ceiling=self._ceiling(responses[2 : 2 + len(terms)]),
        )

    @staticmethod
    def _ceiling(responses: Sequence[models.QueryResponse]) -> float:
        """The keyword ceiling: the sum, over the query words, of the best score each query word
        reaches for this user (that word alone, over the user's live memories, with the user's idf).

        No memory's BM25 for the query can exceed it (its score is a sum of the same per-word
        terms), and a memory holding every query word as strongly as any of the user's memories
        does reaches it: a keyword score over it is the share of the query's weight a memory holds,
        on the same scale for every query and every user. 0 when no memory holds a query word.
        """
        return sum(float(r.points[0].score) for r in responses if r.points)

    def _idf(self, user_id: str) -> models.SearchParams:
        """The user's own BM25 statistics: idf over the user's memories, not the collection's."""
        # The statistics are counted over the storage key alone (no memory is read back by them).
        key_only = models.FieldCondition(key=USER_KEY, match=models.MatchValue(value=user_id))
        return models.SearchParams(idf=models.IdfCorpusParams(corpus=models.Filter(must=[key_only])))

    def neighbours(
        self,
        user_id: str,
        seqs: Sequence[int],
        vector: Sequence[float],
        text: str = "",
        validity: Validity | None = None,
    ) -> builtins.list[Candidate]:
        """One `query_batch_points` round trip: the memories at `seqs` by the dense query (exact,
        so every one comes back with its cosine) and by the sparse one (their BM25)."""
        wanted = sorted(
            {int(s) for s in seqs if isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0}
        )
        if not wanted:
            return []
        dense = [float(x) for x in vector]
        engine_filter = models.Filter(
            must=[
                search_filter(user_id, None, validity=validity),
                models.FieldCondition(key=SEQ_KEY, match=models.MatchAny(any=wanted)),
            ]
        )
        # Room for the rare duplicate `_seq` two processes can write (see the module docstring).
        room = 2 * len(wanted)
        requests = [
            models.QueryRequest(
                query=dense,
                filter=engine_filter,
                params=models.SearchParams(exact=True),
                limit=room,
                with_payload=True,
            )
        ]
        sparse = query_vector(text)
        if sparse is not None:
            requests.append(
                models.QueryRequest(
                    query=sparse, using=SPARSE_KEY, filter=engine_filter, params=self._idf(user_id), limit=room
                )
            )
        with self._guard:
            responses = query_batch(self.client, self.collection_name, requests)
        keyword = {str(p.id): float(p.score) for p in responses[1].points} if sparse is not None else {}
        out = []
        for point in responses[0].points:
            payload = dict(point.payload or {})
            if not belongs(payload, user_id) or payload.get(SEQ_KEY) not in wanted:
                continue
            point_id = str(point.id)
            out.append(
                Candidate(id=point_id, payload=payload, semantic=float(point.score), keyword=keyword.get(point_id, 0.0))
            )
        out.sort(key=lambda c: c.payload[SEQ_KEY])
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
        return builtins.list(reads.scroll(self, engine_filter, limit))
