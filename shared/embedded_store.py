"""The embedded Qdrant (zero-setup default), made fast and thread-safe for one user's queries.

Qdrant's local mode answers a filtered query by running a generic Python filter over every stored
point (~60 µs each here), so a search for one user among 50,000 points costs seconds, and the
mem0 store adapter asks for `{"user_id": ...}` on every search, list and chat turn. Local mode is
single-process (it locks its folder), and every write passes through this wrapper, so the wrapper
can keep an exact index of which points belong to which user and answer user-scoped searches and
lists from Qdrant's own in-memory arrays, touching only that user's rows.

Anything else (other filters, unknown internals after a qdrant-client upgrade) goes to the
regular local-mode path, which stays correct, only slower. One lock serialises all calls: local
mode keeps its state in plain Python structures without locks of its own.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections import defaultdict
from copy import deepcopy
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class EmbeddedQdrantStore:
    """Wraps mem0's Qdrant adapter over a local-mode client; same interface, user-indexed reads."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._by_user: dict[str, set[str]] | None = None
        # Each user's row numbers in local mode's arrays, rebuilt after a write touching the user.
        self._rows_cache: dict[str, np.ndarray] = {}
        self._fast = True

    # --- pass-through, serialised ------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked

    # --- writes keep the user index exact ----------------------------------------------------
    def insert(
        self,
        vectors: builtins.list[Any],
        payloads: builtins.list[dict[str, Any]] | None = None,
        ids: builtins.list[str] | None = None,
    ) -> Any:
        with self._lock:
            result = self._store.insert(vectors=vectors, payloads=payloads, ids=ids)
            if self._by_user is not None and ids is not None:
                for point_id, payload in zip(ids, payloads or [{}] * len(ids), strict=True):
                    self._index(str(point_id), (payload or {}).get("user_id"))
            return result

    def update(self, vector_id: str, vector: Any = None, payload: dict[str, Any] | None = None) -> Any:
        with self._lock:
            result = self._store.update(vector_id=vector_id, vector=vector, payload=payload)
            if self._by_user is not None and payload is not None:
                self._unindex(str(vector_id))
                self._index(str(vector_id), payload.get("user_id"))
            return result

    def delete(self, vector_id: str) -> Any:
        with self._lock:
            result = self._store.delete(vector_id=vector_id)
            if self._by_user is not None:
                self._unindex(str(vector_id))
            return result

    # --- user-scoped reads -------------------------------------------------------------------
    def search(self, query: str, vectors: Any, top_k: int = 5, filters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            user_id = _only_user(filters)
            if user_id is not None and self._fast:
                try:
                    return self._user_search(user_id, vectors, top_k)
                except Exception:
                    self._give_up_fast_path()
            return self._store.search(query=query, vectors=vectors, top_k=top_k, filters=filters)

    def list(self, filters: dict[str, Any] | None = None, top_k: int = 100) -> Any:
        with self._lock:
            user_id = _only_user(filters)
            if user_id is not None and self._fast:
                try:
                    return self._user_list(user_id, top_k)
                except Exception:
                    self._give_up_fast_path()
            return self._store.list(filters=filters, top_k=top_k)

    # --- internals ---------------------------------------------------------------------------
    def _collection(self) -> Any:
        return self._store.client._client.collections[self._store.collection_name]

    def _user_index(self) -> dict[str, set[str]]:
        if self._by_user is None:
            collection = self._collection()
            by_user: dict[str, set[str]] = defaultdict(set)
            for internal, point_id in enumerate(collection.ids_inv):
                if not collection.deleted[internal]:
                    user = collection.payload[internal].get("user_id")
                    if user is not None:
                        by_user[str(user)].add(str(point_id))
            self._by_user = by_user
        return self._by_user

    def _index(self, point_id: str, user_id: Any) -> None:
        if self._by_user is not None and user_id is not None:
            self._by_user.setdefault(str(user_id), set()).add(point_id)
            self._rows_cache.pop(str(user_id), None)

    def _unindex(self, point_id: str) -> None:
        if self._by_user is not None:
            for user, ids in self._by_user.items():
                if point_id in ids:
                    ids.discard(point_id)
                    self._rows_cache.pop(user, None)

    def _rows(self, user_id: str) -> tuple[Any, np.ndarray]:
        collection = self._collection()
        rows = self._rows_cache.get(user_id)
        if rows is None:
            ids = self._user_index().get(user_id, set())
            internal = (collection.ids[_point_key(collection, point_id)] for point_id in ids)
            rows = np.array(sorted(i for i in internal if not collection.deleted[i]), dtype=np.int64)
            self._rows_cache[user_id] = rows
        return collection, rows

    def _user_search(self, user_id: str, query_vector: Any, top_k: int) -> builtins.list[Any]:
        from qdrant_client.http.models import ScoredPoint

        collection, rows = self._rows(user_id)
        if not len(rows):
            return []
        name = next(iter(collection.vectors))
        matrix = collection.vectors[name][rows]
        query = np.asarray(query_vector, dtype=np.float32)
        norm = np.linalg.norm(query)
        # Local mode stores cosine vectors normalised, so a dot product with the unit query is the
        # cosine, the same score Qdrant itself returns.
        scores = matrix @ (query / norm if norm else query)
        k = min(top_k, len(rows))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [
            ScoredPoint(
                id=collection.ids_inv[rows[i]],
                version=0,
                score=float(scores[i]),
                payload=deepcopy(collection.payload[rows[i]]),
            )
            for i in best
        ]

    def _user_list(self, user_id: str, top_k: int) -> tuple[builtins.list[Any], None]:
        from qdrant_client.http.models import Record

        collection, rows = self._rows(user_id)  # already in row order
        return (
            [Record(id=collection.ids_inv[int(i)], payload=deepcopy(collection.payload[int(i)])) for i in rows[:top_k]],
            None,
        )

    def _give_up_fast_path(self) -> None:
        logger.warning("embedded Qdrant fast path unavailable; using local-mode filtering", exc_info=True)
        self._fast = False


def _only_user(filters: dict[str, Any] | None) -> str | None:
    """The user id when the filter is exactly `{"user_id": <str>}`."""
    if filters and set(filters) == {"user_id"} and isinstance(filters["user_id"], str):
        return filters["user_id"]
    return None


def _point_key(collection: Any, point_id: str) -> Any:
    if point_id in collection.ids:
        return point_id
    from qdrant_client.local.utils import normalize_point_id

    return normalize_point_id(point_id)
