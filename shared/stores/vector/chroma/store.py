"""The Chroma adapter itself: mem0's vector-store interface and the port, one collection per user."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from chromadb.errors import NotFoundError, UniqueConstraintError

from shared.errors import ConfigurationProblem
from shared.scope import key_tenant
from shared.stores.vector.chroma import maintenance, reads
from shared.stores.vector.chroma.filters import clean_metadata, mem0_where, search_where, translate, where_matches
from shared.stores.vector.chroma.keywords import analysed
from shared.stores.vector.chroma.queries import (
    PAGE,
    collection_space,
    digest,
    highest_seq,
    hybrid_candidates,
    memory_key,
    neighbour_candidates,
    result_rows,
    similarity,
)
from shared.stores.vector.port import (
    TEXT_KEY,
    USER_KEY,
    Candidate,
    Candidates,
    Hints,
    Hit,
    Position,
    Tally,
    Twins,
    carry_derived,
    derive,
    user_filter_value,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from shared.contract import SearchFilters
    from shared.query.filters import Validity

# chromadb's parameter types (TypedDict `where`s, numpy-or-sequence unions) are stricter than the
# plain dicts and lists built here, and the server validates every call anyway.
Collection = Any

logger = logging.getLogger(__name__)

CATALOG_SUFFIX = "__catalog"
USER_INFIX = "__u"
COSINE = {"hnsw": {"space": "cosine"}}
_T = TypeVar("_T")


class ChromaVectorStore:
    """Memories in one Chroma collection per user, as mem0's vector store (every abstract method of its
    `VectorStoreBase`, not inherited: see shared/stores/vector/port.py) and as the port."""

    kind = "chroma"

    def __init__(
        self,
        client: ClientAPI,
        collection_name: str,
        dims: int,
        *,
        allow_legacy: bool = False,
        embedding_model: str | None = None,
    ) -> None:
        self.client = client
        self.collection_name = collection_name
        self.dims = dims
        self.catalog = self.create_col(f"{collection_name}{CATALOG_SUFFIX}", dims)
        found = (self.catalog.metadata or {}).get("dims")
        if isinstance(found, int) and found != dims:
            raise ConfigurationProblem(
                f"Chroma collections '{collection_name}__*' hold {found}-dimension vectors but the configured "
                f"embedder makes {dims}: use another COLLECTION_NAME for this embedder (or set EMBEDDING_DIMS to match)"
            )
        maintenance.check_embedding_model(self, embedding_model)
        self._batch = int(client.get_max_batch_size())
        self._users: dict[str, tuple[Collection, str]] = {}  # user id -> (collection, distance space)
        self._users_guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        # For `candidates`: the dense query and the first keyword scan go out together.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chroma-store")
        self._recent = threading.local()  # the idf weights of this thread's last `candidates`
        if not allow_legacy:
            maintenance.refuse_legacy(self)

    # --- collections -------------------------------------------------------------------------
    def create_col(self, name: str, vector_size: int | None = None, distance: str | None = "cosine") -> Collection:
        """Opens a collection, creating it in cosine space when missing (an existing one keeps its space)."""
        metadata = {"dims": int(vector_size)} if vector_size else None
        try:
            return self.client.get_or_create_collection(
                name=name,
                configuration=COSINE,  # type: ignore[arg-type]
                metadata=metadata,
                embedding_function=None,
            )
        except UniqueConstraintError:  # another worker created it between Chroma's check and insert
            return self.client.get_collection(name=name, embedding_function=None)

    def user_collection_name(self, user_id: str) -> str:
        return f"{self.collection_name}{USER_INFIX}{digest(user_id)[:32]}"

    def _user(self, user_id: str, create: bool) -> tuple[Collection, str] | None:
        """The user's collection and its distance space (None: the user has none and `create` is False)."""
        with self._users_guard:
            known = self._users.get(user_id)
        if known is not None:
            return known
        name = self.user_collection_name(user_id)
        if create:
            collection = self.create_col(name)
        else:
            try:
                collection = self.client.get_collection(name=name, embedding_function=None)
            except NotFoundError:
                return None
        entry = (collection, collection_space(collection))
        with self._users_guard:
            if len(self._users) > 50_000:  # collection handles are small; a bound for very many users
                self._users.clear()
            self._users[user_id] = entry
        return entry

    def _on_user(self, user_id: str, call: Callable[[Collection, str], _T], missing: _T, create: bool = False) -> _T:
        """`call` on the user's collection, or `missing` when the user has none. A handle this
        process cached may name a collection another process deleted (a reset): looked up again once."""
        for attempt in range(2):
            entry = self._user(user_id, create)
            if entry is None:
                return missing
            try:
                return call(*entry)
            except NotFoundError:
                with self._users_guard:
                    self._users.pop(user_id, None)
                if attempt:
                    raise
        return missing  # not reached: the second attempt returns or raises

    def _on_catalog(self, call: Callable[[Collection], _T]) -> _T:
        """`call` on the catalog, reopened once if another process deleted and recreated it (a reset)."""
        try:
            return call(self.catalog)
        except NotFoundError:
            self.catalog = self.create_col(f"{self.collection_name}{CATALOG_SUFFIX}", self.dims)
            return call(self.catalog)

    def owners(self, ids: Sequence[str]) -> dict[str, str]:
        """memory id -> user id, from the catalog (one call)."""
        if not ids:
            return {}
        keys = [memory_key(i) for i in ids]
        got = self._on_catalog(lambda catalog: catalog.get(ids=keys, include=["metadatas"]))
        owners = {}
        for key, metadata in result_rows(got, "metadatas"):
            user = (metadata or {}).get(USER_KEY)
            if isinstance(user, str):
                owners[key.removeprefix("m:")] = user
        return owners

    def user_collections(self) -> list[Any]:
        """This store's user collections (exactly `<collection>__u` + 32 hex digits: not another store's)."""
        mine = re.compile(re.escape(f"{self.collection_name}{USER_INFIX}") + "[0-9a-f]{32}")
        found: list[Any] = []
        while True:
            page = self.client.list_collections(limit=PAGE, offset=len(found))
            found.extend(page)
            if len(page) < PAGE:
                return [c for c in found if mine.fullmatch(c.name)]

    def list_cols(self) -> Any:
        return self.client.list_collections()

    def delete_col(self) -> None:
        """Deletes every collection of this store (the users' and the catalog); already gone is done."""
        for name in [c.name for c in self.user_collections()] + [f"{self.collection_name}{CATALOG_SUFFIX}"]:
            with contextlib.suppress(NotFoundError):  # another worker deleted it first: the same outcome
                self.client.delete_collection(name=name)
        with self._users_guard:
            self._users.clear()

    def col_info(self) -> dict[str, Any]:
        return {
            "name": self.collection_name,
            "layout": "one collection per user",
            "users": len(self.user_collections()),
            "catalog_records": self.catalog.count(),
            "dims": self.dims,
        }

    def reset(self) -> None:
        logger.warning("resetting the Chroma collections of %s", self.collection_name)
        self.delete_col()
        self.catalog = self.create_col(f"{self.collection_name}{CATALOG_SUFFIX}", self.dims)

    # --- write order ---------------------------------------------------------------------------
    def _user_lock(self, user_id: str) -> threading.Lock:
        with self._users_guard:
            lock = self._locks.get(user_id)
            if lock is None:
                lock = self._locks[user_id] = threading.Lock()
            return lock

    def _stored_next(self, user_id: str) -> int:
        """One past the user's highest stored `_seq`: a scan, only when the counter is missing."""

        return self._on_user(user_id, lambda collection, _space: highest_seq(collection) + 1, 0)

    def _counters(self, users: Sequence[str]) -> dict[str, int]:
        """One past each user's highest `_seq` given out: the catalog's counters (a scan where one is missing)."""
        got = self._on_catalog(
            lambda catalog: catalog.get(ids=[f"s:{digest(u)}" for u in users], include=["metadatas"])
        )
        known = {}
        for _, metadata in result_rows(got, "metadatas"):
            user, stored = (metadata or {}).get(USER_KEY), (metadata or {}).get("next")
            if isinstance(user, str) and isinstance(stored, int):
                known[user] = stored
        return {u: known[u] if u in known else self._stored_next(u) for u in users}

    def reserve(self, memories: Mapping[str, Sequence[str]]) -> dict[str, int]:
        """The first `_seq` of each user's new memories (ids in `memories`); moves each user's counter
        forward by their count and records the ids' owner, in one catalog write.

        Takes the users' locks (in one order for all threads: no deadlock). Counters move before the
        memories are written, so a write that fails leaves a gap in the numbers, never a reuse.
        """
        users = sorted(memories)
        locks = [self._user_lock(u) for u in users]
        for lock in locks:
            lock.acquire()
        try:
            first = self._counters(users)
            ids = [f"s:{digest(u)}" for u in users]
            metadatas: list[dict[str, Any]] = [{USER_KEY: u, "next": first[u] + len(memories[u])} for u in users]
            for user in users:
                ids.extend(memory_key(m) for m in memories[user])
                metadatas.extend({USER_KEY: user} for _ in memories[user])
            for start in range(0, len(ids), self._batch):
                chunk, meta = ids[start : start + self._batch], metadatas[start : start + self._batch]

                def write(catalog: Collection, chunk: list[str] = chunk, meta: list[dict[str, Any]] = meta) -> None:
                    # Chroma wants a vector with every record; this one is never searched
                    catalog.upsert(ids=chunk, embeddings=[[1.0]] * len(chunk), metadatas=meta)

                self._on_catalog(write)
            return first
        finally:
            for lock in reversed(locks):
                lock.release()

    def write(self, user_id: str, ids: list[str], vectors: list[Any], payloads: list[dict[str, Any]]) -> None:
        def upsert(collection: Collection, _space: str) -> None:
            for start in range(0, len(ids), self._batch):
                stop = start + self._batch
                # upsert, not add: mem0 retries a failed batch one memory at a time
                collection.upsert(
                    ids=ids[start:stop],
                    embeddings=[[float(x) for x in v] for v in vectors[start:stop]],
                    metadatas=[clean_metadata(p) for p in payloads[start:stop]],
                    documents=[analysed(str(p.get(TEXT_KEY) or "")) for p in payloads[start:stop]],
                )

        self._on_user(user_id, upsert, None, create=True)

    # --- mem0's interface ----------------------------------------------------------------------
    def insert(
        self, vectors: list[Any], payloads: list[dict[str, Any]] | None = None, ids: list[str] | None = None
    ) -> None:
        """Writes new memories, numbering each user's in list order after the user's last `_seq`."""
        count = len(vectors)
        rows = [dict(p or {}) for p in payloads] if payloads is not None else [{} for _ in range(count)]
        keys = [str(i) for i in ids] if ids is not None else [str(uuid.uuid4()) for _ in range(count)]
        by_user: dict[str, list[int]] = {}
        for position, payload in enumerate(rows):
            user = payload.get(USER_KEY)
            if not isinstance(user, str) or not user:
                raise ValueError("the Chroma store keeps memories per user: every payload needs a user_id")
            by_user.setdefault(user, []).append(position)
        if not by_user:
            return
        first = self.reserve({u: [keys[p] for p in positions] for u, positions in by_user.items()})
        for user, positions in by_user.items():
            numbered = [derive(rows[p], first[user] + n) for n, p in enumerate(positions)]
            self.write(user, [keys[p] for p in positions], [vectors[p] for p in positions], numbered)

    def search(
        self, query: str, vectors: Sequence[float], top_k: int = 5, filters: dict[str, Any] | None = None
    ) -> list[Hit]:
        """Dense search in the user's collection (mem0 always names the user); scores are cosine similarities."""
        user = self._required_user(filters)
        inner = mem0_where({k: v for k, v in (filters or {}).items() if k != USER_KEY})
        whole = mem0_where(filters)
        vector = [float(x) for x in vectors]

        def query_user(collection: Collection, space: str) -> list[Hit]:
            result = collection.query(
                query_embeddings=[vector], n_results=top_k, where=inner, include=["metadatas", "distances"]
            )
            hits = []
            for memory_id, metadata, distance in result_rows(result, "metadatas", "distances", nested=True):
                payload = dict(metadata or {})
                if payload.get(USER_KEY) == user and where_matches(payload, whole) and distance is not None:
                    hits.append(Hit(id=memory_id, payload=payload, score=similarity(space, distance)))
            return hits

        return self._on_user(user, query_user, [])

    def keyword_search(self, query: str, top_k: int = 5, filters: dict[str, Any] | None = None) -> None:
        """mem0's BM25 hook: Chroma has none; the keyword side is `candidates`."""
        return None

    def get(self, vector_id: str) -> Hit | None:
        memory_id = str(vector_id)
        user = self.owners([memory_id]).get(memory_id)
        if user is None:
            return None

        def get_one(collection: Collection, _space: str) -> Hit | None:
            for found, metadata in result_rows(collection.get(ids=[memory_id], include=["metadatas"]), "metadatas"):
                return Hit(id=found, payload=dict(metadata or {}))
            return None

        return self._on_user(user, get_one, None)

    def update(
        self, vector_id: str, vector: Sequence[float] | None = None, payload: dict[str, Any] | None = None
    ) -> None:
        """Rewrites a memory; a new payload keeps the memory's derived fields. Vector only: payload kept."""
        memory_id = str(vector_id)
        user = self.owners([memory_id]).get(memory_id)
        if user is None:
            return  # unknown id (mem0 reads the memory first); Chroma's own update would ignore it too
        embeddings = [[float(x) for x in vector]] if vector is not None else None

        def rewrite(collection: Collection, _space: str) -> None:
            if payload is None:
                if embeddings is not None:
                    collection.update(ids=[memory_id], embeddings=embeddings)
                return
            include: list[Any] = ["metadatas", "documents"] + ([] if embeddings else ["embeddings"])
            rows = result_rows(collection.get(ids=[memory_id], include=include), "metadatas", "documents", "embeddings")
            if not rows:
                return
            _, old_metadata, old_document, old_vector = rows[0]
            old = dict(old_metadata or {})
            new = carry_derived(payload, old)
            if new.get(USER_KEY) != user:
                raise ValueError("a memory cannot change its user_id")
            metadata: dict[str, Any] = clean_metadata(new)
            # Chroma merges metadata on update: keys the new payload lacks are deleted by sending None.
            metadata.update({key: None for key in old if key not in metadata})
            document = analysed(str(new.get(TEXT_KEY) or ""))
            vectors = embeddings
            documents = None
            if document != old_document:
                documents = [document]
                if vectors is None and old_vector is not None:
                    # Chroma embeds a new document itself unless given a vector: give it the stored one.
                    vectors = [[float(x) for x in old_vector]]
            collection.update(
                ids=[memory_id],
                embeddings=vectors,
                metadatas=[metadata],
                documents=documents,
            )

        self._on_user(user, rewrite, None)

    def delete(self, vector_id: str, user_id: str | None = None) -> None:
        # The catalog names the owner; when it lost the id (a write stopped before its record, a reset
        # by another worker) the caller's `user_id` does, so the memory is erased, not silently kept.
        memory_id = str(vector_id)
        user = self.owners([memory_id]).get(memory_id) or user_id
        if user is None:
            return
        self._on_user(user, lambda collection, _space: collection.delete(ids=[memory_id]), None)
        self._on_catalog(lambda catalog: catalog.delete(ids=[memory_key(memory_id)]))

    @staticmethod
    def _required_user(filters: Mapping[str, Any] | None) -> str:
        user = user_filter_value(filters)
        if user is None:
            raise ValueError("the Chroma store keeps memories per user: filters need one user_id")
        return user

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
        """Up to `limit` dense and up to `limit` keyword matches from the user's collection.

        Three concurrent engine calls (the dense query and the two keyword scans, see the module),
        then one fetch by id of the vectors and payloads of keyword-only hits, whose cosine is
        computed here; dense hits' cosine is the engine's distance. `hints` are not looked up:
        Chroma's list metadata cannot be matched against several values in one indexed call.
        """

        def on_collection(collection: Collection, space: str) -> Candidates:
            found, weights = hybrid_candidates(self._pool, collection, space, user_id, vector, text, limit, filters)
            self._recent.weights = (user_id, text, weights)  # the scale of this search's `neighbours` call
            return found

        return self._on_user(user_id, on_collection, Candidates(items=[], keyword_exhaustive=True))

    def neighbours(
        self,
        user_id: str,
        seqs: Sequence[int],
        vector: Sequence[float],
        text: str = "",
        validity: Validity | None = None,
    ) -> list[Candidate]:
        """Memories at write positions `seqs`, scored on the scale of `candidates` (one call)."""
        wanted = sorted({int(s) for s in seqs})
        if not wanted:
            return []
        recent = getattr(self._recent, "weights", None)
        weights = recent[2] if recent is not None and recent[:2] == (user_id, text) else None
        found = partial(neighbour_candidates, user_id=user_id, wanted=wanted, vector=vector, text=text)
        return self._on_user(user_id, lambda c, _space: found(c, weights=weights, validity=validity), [])

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return reads.fetch(self, ids)

    def page_user(
        self, user_id: str, limit: int, before: Position | None = None, filters: SearchFilters | None = None
    ) -> list[Hit]:
        """Windows of `_seq` numbers below the cursor's, or below the user's counter (reads.py)."""
        top = lambda: self._counters([user_id])[user_id]  # noqa: E731 - read only for a first page
        return self._on_user(user_id, lambda c, _space: reads.page(c, user_id, limit, before, filters, top), [])

    def tally_user(self, user_id: str) -> Tally:
        return self._on_user(user_id, lambda c, _space: reads.tally(c, user_id), Tally())

    def list_user(
        self, user_id: str, limit: int | None = None, filters: SearchFilters | None = None, *, expired: bool = False
    ) -> list[Hit]:
        """The user's memories passing `filters` (and unexpired, unless `expired`), a page per engine call."""
        where = translate(filters.condition() if filters else None) if expired else search_where(filters)
        return self._on_user(user_id, lambda c, _space: maintenance.pages(c, user_id, where, limit), [])

    def count_user(self, user_id: str) -> int:
        """Chroma's count of the user's collection less its expired memories (an engine range query)."""
        return self._on_user(user_id, lambda c, _space: maintenance.count_live(c, key_tenant(user_id)), 0)

    def twins(self, user_id: str, scope: str, keys: Sequence[str], vectors: Sequence[Sequence[float]]) -> Twins:
        none = Twins([], [None] * len(vectors))  # a user without a collection has no memories
        return self._on_user(user_id, lambda c, space: reads.twins(c, space, user_id, scope, keys, vectors), none)

    def expired_points(self, now: float, limit: int) -> list[Hit]:
        """Up to `limit` expired memories: one range query on `_expires` per user collection."""
        return maintenance.expired_points(self, now, limit)

    def ping(self) -> dict[str, Any]:
        return {"kind": self.kind, "heartbeat": self.client.heartbeat()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- maintenance (shared/stores/vector/chroma/maintenance.py) ------------------------------
    def reanalyse(self) -> int:
        """Rewrites the documents whose analysed form is stale; returns how many changed."""
        return maintenance.reanalyse(self)

    def migrate(self, source: str | None = None) -> int:
        """Moves memories of the old single-collection layout into this one; returns how many."""
        return maintenance.migrate(self, source)

    # mem0's `list` comes last: below it, `list[...]` in an annotation would name this method.
    def list(self, filters: dict[str, Any] | None = None, top_k: int | None = None) -> list[list[Hit]]:
        user = self._required_user(filters)
        return self._on_user(user, lambda c, _space: [reads.mem0_list(c, user, filters, top_k)], [[]])
