"""The Chroma server adapter: mem0's vector store and the port's hybrid candidates, one collection per user.

Why one collection per user. Chroma 1.5's single-node server answers a `where` by collecting the
ids of every record the condition lets through (SQL over its metadata table), and a filtered
dense query hands that set to HNSW: a "this user's memories" filter costs in proportion to the
user's memories. Measured on this machine (2 cores shared, load ~5), a user-filtered dense query at
10,000 of 60,000 memories took a median 93 ms, the same query on that user's own collection 8 ms;
a filter that lets few records through costs ~3 ms. With one collection per user the dense side
is an unfiltered HNSW query of the user's own index, and counting and neighbour lookups touch only
the user's records.

Layout, all created in cosine space:

- `<collection>__u<32 hex digits of sha256(user_id)>`: the user's memories (vector, mem0's payload
  as metadata, the analysed text as document);
- `<collection>__catalog`: tiny records (a 1-dimension vector Chroma insists on) keyed
  `m:<memory id>` -> {user_id} (mem0 reads, updates and deletes by id alone) and
  `s:<sha256(user_id)>` -> {user_id, next} (the user's write-order counter). Its collection
  metadata records the embedding size, so another embedder is refused at start.

Keyword candidates. Single-node Chroma has no sparse index, so no BM25. A record's document is not
the raw text (that stays in the payload as mem0's `data`) but its analysed form ` term term `:
the distinct terms of `shared.search.text.tokenize` (casefolded Snowball stems without stop words, CJK
character bigrams) between single spaces. `$contains` is a case-sensitive `LIKE` substring test
(on raw text "python" misses "Python" and "art" hits "party"), and each `$contains` of an `$or`
is another pass (measured ~20 ms a term), so the query is one `$regex`, ` (?:t1|t2|...) `: exact
terms in one pass. Chroma returns matches unranked, in storage order (oldest first). A user with
at most `SMALL_USER * limit` memories gets every match from one scan. For a larger one the first
scan asks for memories holding at least two distinct query terms (a document's terms are
distinct, so two matches of the alternation are two terms), up to twice `limit`; only when it
finds fewer than `limit` does a second scan ask for any term. The best `limit` by matched share
are kept. On LoCoMo dev this pool held 0.877 of the evidence turns against 0.782 for the first
`limit` matches of any term (measured while the adapter was written). Each candidate's `keyword` is
the idf-weighted share of the query's terms its document holds (`keyword_ceiling` is 1).
After a change to the analyser, `reanalyse` rewrites the documents.

What still grows with the server's data: Chroma keeps one full-text table for all collections and
runs `$regex` over all of it before keeping the collection's rows (`sqlite_metadata.rs`), so a
keyword scan reads every memory on the server, not only the user's (~12-20 ms at 60,000 on this
machine, against ~2 ms for 1,300). Indexed alternative, not taken: the terms as a list metadata
value, matched with `{"_terms": {"$contains": t}}` through Chroma's metadata index, costs in
proportion to how many memories on the server hold the term (measured 2.4 ms for a rare term, 15
ms for one in a quarter of the memories), but "at least two of these terms" cannot be asked that
way, and ranking would need one query per term.

The single-node server answers one request at a time (three sent at once took as long as three in
a row), so running the dense query beside the first scan saves client time, not server time.

Write order (`_seq`). Chroma has no order-by, so "the user's highest `_seq`" is not one query; the
catalog's counter is read and moved forward by the number of new memories, then they are written.
In one process a per-user lock makes that exact. Two processes writing memories of the same user
at the same instant can read the same counter and give two memories one `_seq`: harmless for
ranking (a neighbour lookup then returns both), and rare. A missing counter (a lost catalog
record) is rebuilt from the user's stored `_seq` values once.

Chroma metadata values are str/int/float/bool or non-empty lists: None values and empty lists are
dropped on write. Chroma merges metadata on update, so keys a rewrite drops are sent as None
(which deletes them).

Other costs that grow: a search with filters that let many of the user's memories through (see
`_dense` and `_scan`), `list_user`. `count_user` is Chroma's collection count. Many users mean
many small HNSW indexes on the server, each loaded on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from chromadb.errors import NotFoundError, UniqueConstraintError

from shared.errors import ConfigurationProblem
from shared.search.text import tokenize
from shared.stores.vector.port import (
    SEQ_KEY,
    TEXT_KEY,
    TS_KEY,
    USER_KEY,
    Candidate,
    Candidates,
    Hints,
    Hit,
    belongs,
    carry_derived,
    derive,
    matches,
    timestamp,
    user_filter_value,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from shared.contract import SearchFilters

# chromadb's parameter types (TypedDict `where`s, numpy-or-sequence unions) are stricter than the
# plain dicts and lists built here, and the server validates every call anyway.
Collection = Any

logger = logging.getLogger(__name__)

CATALOG_SUFFIX = "__catalog"
USER_INFIX = "__u"
COSINE = {"hnsw": {"space": "cosine"}}
# A long query (a pasted paragraph) would make a huge alternation; its first distinct terms carry it.
MAX_QUERY_TERMS = 32
# Each keyword scan returns up to this many times `limit` documents, ranked here by matched share.
KEYWORD_WINDOW = 2
# With search filters, the dense side first asks for this many times `limit` unfiltered neighbours.
DENSE_OVERFETCH = 4
# A user with at most this many times `limit` memories gets every keyword match in one scan.
SMALL_USER = 10
# Page size when listing or migrating; Chroma answers one page per call.
PAGE = 1000
_T = TypeVar("_T")


# --- text --------------------------------------------------------------------------------------
def analysed(text: str) -> str:
    """The document Chroma holds: the text's distinct terms between single spaces, padded."""
    terms = dict.fromkeys(tokenize(text))
    return f" {' '.join(terms)} " if terms else " "


def query_terms(text: str) -> list[str]:
    return list(dict.fromkeys(tokenize(text)))[:MAX_QUERY_TERMS]


def keyword_patterns(terms: Sequence[str]) -> list[str]:
    """`$regex` patterns over analysed documents: any of the terms; at least two of them."""
    if not terms:
        return []
    either = "(?:" + "|".join(re.escape(term) for term in terms) + ")"
    patterns = [f" {either} "]
    if len(terms) > 1:
        # Terms in a document are distinct, so two matches of `either` are two different terms.
        patterns.append(f" {either}(?: | .* ){either} ")
    return patterns


def matched_terms(document: str | None, text: str | None, terms: Sequence[str]) -> int:
    """How many of `terms` the memory holds, from its analysed document (or its text, if it has none)."""
    held = held_terms(document, text)
    return sum(1 for term in terms if term in held)


def held_terms(document: str | None, text: str | None) -> set[str]:
    """The terms a memory holds: its analysed document, or its text analysed when it has none."""
    return set(document.split()) if document and document.strip() else set(tokenize(text or ""))


def idf_weights(terms: Sequence[str], held: Sequence[set[str]], total: int) -> dict[str, float]:
    """BM25's idf of each query term over `total` memories, `held` being the term sets of those seen.

    Exact when `held` covers every memory holding a query term (a small user's scan); otherwise a
    common term's count is cut at what the scans returned, which overstates its weight a little.
    """
    weights = {}
    for term in terms:
        df = sum(1 for terms_of in held if term in terms_of)
        if df:
            weights[term] = math.log(1 + (max(total, df) - df + 0.5) / (df + 0.5))
    return weights


def weighted_share(held: set[str], weights: Mapping[str, float]) -> float:
    """The idf-weighted share of the query's terms (those some memory holds) that `held` holds."""
    total = sum(weights.values())
    return sum(w for term, w in weights.items() if term in held) / total if total else 0.0


# --- filters -----------------------------------------------------------------------------------
def clean_metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What Chroma accepts: no None values, no empty lists."""
    return {k: v for k, v in payload.items() if v is not None and not (isinstance(v, list) and not v)}


def combine(conditions: list[dict[str, Any]], operator: str = "$and") -> dict[str, Any] | None:
    """Chroma wants `$and`/`$or` with two or more operands; one condition stands alone."""
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {operator: conditions}


_MEM0_OPERATORS = {"eq": "$eq", "ne": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
_MEM0_SET_OPERATORS = {"in": "$in", "nin": "$nin"}
_NEGATED = {"$eq": "$ne", "$ne": "$eq", "$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}
_NEGATED |= {"$in": "$nin", "$nin": "$in"}


def mem0_where(filters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """mem0's filter dict as a Chroma `where`.

    Plain values are equality, `{"in": [...]}` and the comparison operators map one to one, `"*"`
    means any value, and `$or`/`$and`/`$not` (or OR/AND/NOT) hold lists of such dicts.
    """
    conditions: list[dict[str, Any]] = []
    for key, value in (filters or {}).items():
        if value is None or value == "*":
            continue
        if key in ("$or", "$and", "OR", "AND"):
            parts = [part for part in (mem0_where(item) for item in value) if part]
            joined = combine(parts, "$or" if key in ("$or", "OR") else "$and")
            if joined:
                conditions.append(joined)
        elif key in ("$not", "NOT"):
            parts = [part for part in (mem0_where(item) for item in value) if part]
            conditions.extend(_negate(part) for part in parts)
        elif isinstance(value, Mapping):
            for op, operand in value.items():
                if op in _MEM0_OPERATORS:
                    conditions.append({key: {_MEM0_OPERATORS[op]: operand}})
                elif op in _MEM0_SET_OPERATORS:
                    conditions.append({key: {_MEM0_SET_OPERATORS[op]: list(operand)}})
                else:
                    raise ValueError(f"filter operator '{op}' on '{key}' is not supported by the Chroma store")
        else:
            conditions.append({key: {"$eq": value}})
    return combine(conditions)


def _negate(where: dict[str, Any]) -> dict[str, Any]:
    """NOT of a Chroma `where` (De Morgan over `$and`/`$or`): Chroma has no NOT of its own."""
    (key, value), *_ = where.items()
    if key == "$and":
        return {"$or": [_negate(part) for part in value]}
    if key == "$or":
        return {"$and": [_negate(part) for part in value]}
    (op, operand), *_ = value.items()
    return {key: {_NEGATED[op]: operand}}


def where_matches(payload: Mapping[str, Any], where: Mapping[str, Any] | None) -> bool:
    """A Chroma `where` (as built here) evaluated on a payload: the engine is never trusted alone."""
    if not where:
        return True
    (key, value), *_ = where.items()
    if key == "$and":
        return all(where_matches(payload, part) for part in value)
    if key == "$or":
        return any(where_matches(payload, part) for part in value)
    (op, operand), *_ = value.items()
    stored = payload.get(key)
    if op in ("$eq", "$ne"):
        same = stored == operand and isinstance(stored, bool) == isinstance(operand, bool)
        return same if op == "$eq" else not same
    if op in ("$in", "$nin"):
        return bool((stored in operand) == (op == "$in"))
    if not isinstance(stored, int | float) or isinstance(stored, bool):
        return False
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b,
        "$lt": lambda a, b: a < b,
        "$lte": lambda a, b: a <= b,
    }
    return compare[op](stored, operand)


def search_where(filters: SearchFilters | None) -> dict[str, Any] | None:
    """The API's search filters as a Chroma `where` inside a user's collection (`matches` checks after)."""
    if filters is None:
        return None
    conditions: list[dict[str, Any]] = [{key: {"$eq": value}} for key, value in (filters.metadata or {}).items()]
    if filters.categories:
        conditions.append({"category": {"$in": list(filters.categories)}})
    if filters.created_after is not None:
        conditions.append({TS_KEY: {"$gte": timestamp(filters.created_after)}})
    if filters.created_before is not None:
        conditions.append({TS_KEY: {"$lt": timestamp(filters.created_before)}})
    return combine(conditions)


# --- vectors -----------------------------------------------------------------------------------
def cosine(a: np.ndarray, b: Any) -> float:
    if b is None:
        return 0.0
    other = np.asarray(b, dtype=np.float32)
    norm = float(np.linalg.norm(a) * np.linalg.norm(other))
    return float(np.dot(a, other) / norm) if norm > 0 else 0.0


def collection_space(collection: Collection) -> str:
    """The distance space of a collection (1.x configuration, else the 0.x metadata key)."""
    configuration: Mapping[str, Any] = collection.configuration or {}
    for index in ("hnsw", "spann"):
        space = (configuration.get(index) or {}).get("space")
        if space:
            return str(space)
    return str((collection.metadata or {}).get("hnsw:space") or "l2")


def similarity(space: str, distance: float) -> float:
    """Chroma's distance as cosine similarity.

    cosine: d = 1 - cos. ip: d = 1 - a.b, the cosine for the unit vectors every embedder here makes.
    l2 (squared): d = |a - b|^2 = 2 - 2 cos for unit vectors.
    """
    return 1.0 - float(distance) / 2.0 if space == "l2" else 1.0 - float(distance)


def _rows(result: Mapping[str, Any], *keys: str, nested: bool = False) -> list[tuple[Any, ...]]:
    """A Chroma result as rows of (id, *keys); absent columns read as None. `nested`: a query's first list."""

    def column(key: str) -> list[Any] | None:
        value = result.get(key)
        if value is None:
            return None
        return list(value[0]) if nested else list(value)

    ids = column("ids") or []
    columns = [column(key) or [None] * len(ids) for key in keys]
    return [(str(memory_id), *values) for memory_id, *values in zip(ids, *columns, strict=True)]


def _memory_key(memory_id: str) -> str:
    return f"m:{memory_id}"


def _digest(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


class ChromaVectorStore:
    """Memories in one Chroma collection per user, as mem0's vector store and as the port (see the module).

    mem0's interface is implemented method by method (every abstract method of its
    `VectorStoreBase`), not inherited: importing mem0 here would run its import-time setup (its
    telemetry flag, its home folder) before `shared.ai.backends.prepare_mem0_environment` set them.
    """

    kind = "chroma"

    def __init__(self, client: ClientAPI, collection_name: str, dims: int, *, allow_legacy: bool = False) -> None:
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
        self._batch = int(client.get_max_batch_size())
        self._users: dict[str, tuple[Collection, str]] = {}  # user id -> (collection, distance space)
        self._users_guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        # For `candidates`: the dense query and the first keyword scan go out together.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chroma-store")
        self._recent = threading.local()  # the idf weights of this thread's last `candidates`
        if not allow_legacy:
            self._refuse_legacy()

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
        return f"{self.collection_name}{USER_INFIX}{_digest(user_id)[:32]}"

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

    def _owners(self, ids: Sequence[str]) -> dict[str, str]:
        """memory id -> user id, from the catalog (one call)."""
        if not ids:
            return {}
        keys = [_memory_key(i) for i in ids]
        got = self._on_catalog(lambda catalog: catalog.get(ids=keys, include=["metadatas"]))
        owners = {}
        for key, metadata in _rows(got, "metadatas"):
            user = (metadata or {}).get(USER_KEY)
            if isinstance(user, str):
                owners[key.removeprefix("m:")] = user
        return owners

    def _user_collections(self) -> list[Any]:
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
        for name in [c.name for c in self._user_collections()] + [f"{self.collection_name}{CATALOG_SUFFIX}"]:
            with contextlib.suppress(NotFoundError):  # another worker deleted it first: the same outcome
                self.client.delete_collection(name=name)
        with self._users_guard:
            self._users.clear()

    def col_info(self) -> dict[str, Any]:
        return {
            "name": self.collection_name,
            "layout": "one collection per user",
            "users": len(self._user_collections()),
            "catalog_records": self.catalog.count(),
            "dims": self.dims,
        }

    def reset(self) -> None:
        logger.warning("resetting the Chroma collections of %s", self.collection_name)
        self.delete_col()
        self.catalog = self.create_col(f"{self.collection_name}{CATALOG_SUFFIX}", self.dims)

    def _refuse_legacy(self) -> None:
        """mem0's own Chroma adapter kept everything in one collection named `collection_name`.

        Those memories are not in this layout: serving without them would look like data loss, so
        the store refuses to start and names the command that moves them.
        """
        from shared.stores.vector import MIGRATE_COMMAND

        try:
            legacy = self.client.get_collection(name=self.collection_name, embedding_function=None)
        except NotFoundError:
            return
        count = legacy.count()
        if count:
            raise ConfigurationProblem(
                f"Chroma collection '{self.collection_name}' holds {count} memories in the layout of earlier "
                f"versions (one collection for all users): run `{MIGRATE_COMMAND}` once to move them into this "
                "version's layout (the old collection is left as it was), or use another COLLECTION_NAME"
            )

    # --- write order ---------------------------------------------------------------------------
    def _user_lock(self, user_id: str) -> threading.Lock:
        with self._users_guard:
            lock = self._locks.get(user_id)
            if lock is None:
                lock = self._locks[user_id] = threading.Lock()
            return lock

    def _stored_next(self, user_id: str) -> int:
        """One past the user's highest stored `_seq`: a scan, only when the counter is missing."""

        def highest(collection: Collection, _space: str) -> int:
            got = collection.get(include=["metadatas"])
            numbers = [
                int(s)
                for _, metadata in _rows(got, "metadatas")
                if isinstance(s := (metadata or {}).get(SEQ_KEY), int | float) and not isinstance(s, bool)
            ]
            return max(numbers) + 1 if numbers else 0

        return self._on_user(user_id, highest, 0)

    def _reserve(self, memories: Mapping[str, Sequence[str]]) -> dict[str, int]:
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
            counters = [f"s:{_digest(u)}" for u in users]
            got = self._on_catalog(lambda catalog: catalog.get(ids=counters, include=["metadatas"]))
            known = {}
            for _, metadata in _rows(got, "metadatas"):
                user, stored = (metadata or {}).get(USER_KEY), (metadata or {}).get("next")
                if isinstance(user, str) and isinstance(stored, int):
                    known[user] = stored
            first = {u: known[u] if u in known else self._stored_next(u) for u in users}
            ids = [f"s:{_digest(u)}" for u in users]
            metadatas: list[dict[str, Any]] = [{USER_KEY: u, "next": first[u] + len(memories[u])} for u in users]
            for user in users:
                ids.extend(_memory_key(m) for m in memories[user])
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

    def _write(self, user_id: str, ids: list[str], vectors: list[Any], payloads: list[dict[str, Any]]) -> None:
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
        first = self._reserve({u: [keys[p] for p in positions] for u, positions in by_user.items()})
        for user, positions in by_user.items():
            numbered = [derive(rows[p], first[user] + n) for n, p in enumerate(positions)]
            self._write(user, [keys[p] for p in positions], [vectors[p] for p in positions], numbered)

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
            for memory_id, metadata, distance in _rows(result, "metadatas", "distances", nested=True):
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
        user = self._owners([memory_id]).get(memory_id)
        if user is None:
            return None

        def get_one(collection: Collection, _space: str) -> Hit | None:
            for found, metadata in _rows(collection.get(ids=[memory_id], include=["metadatas"]), "metadatas"):
                return Hit(id=found, payload=dict(metadata or {}))
            return None

        return self._on_user(user, get_one, None)

    def update(
        self, vector_id: str, vector: Sequence[float] | None = None, payload: dict[str, Any] | None = None
    ) -> None:
        """Rewrites a memory; a new payload keeps the memory's derived fields. Vector only: payload kept."""
        memory_id = str(vector_id)
        user = self._owners([memory_id]).get(memory_id)
        if user is None:
            return  # unknown id (mem0 reads the memory first); Chroma's own update would ignore it too
        embeddings = [[float(x) for x in vector]] if vector is not None else None

        def rewrite(collection: Collection, _space: str) -> None:
            if payload is None:
                if embeddings is not None:
                    collection.update(ids=[memory_id], embeddings=embeddings)
                return
            include: list[Any] = ["metadatas", "documents"] + ([] if embeddings else ["embeddings"])
            rows = _rows(collection.get(ids=[memory_id], include=include), "metadatas", "documents", "embeddings")
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

    def delete(self, vector_id: str) -> None:
        memory_id = str(vector_id)
        user = self._owners([memory_id]).get(memory_id)
        if user is None:
            return

        def delete_one(collection: Collection, _space: str) -> None:
            collection.delete(ids=[memory_id])

        self._on_user(user, delete_one, None)
        self._on_catalog(lambda catalog: catalog.delete(ids=[_memory_key(memory_id)]))

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
        return self._on_user(
            user_id,
            lambda collection, space: self._candidates(collection, space, user_id, vector, text, limit, filters),
            Candidates(items=[], keyword_exhaustive=True),
        )

    def _candidates(
        self,
        collection: Collection,
        space: str,
        user_id: str,
        vector: Sequence[float],
        text: str,
        limit: int,
        filters: SearchFilters | None,
    ) -> Candidates:
        terms = query_terms(text)
        patterns = keyword_patterns(terms)
        query = [float(x) for x in vector]
        window = KEYWORD_WINDOW * limit
        # A small user's matches all fit in one answer: one scan for any term, nothing cut off.
        small = bool(patterns) and collection.count() <= SMALL_USER * limit
        # The dense query and the first keyword scan go out together. Chroma's single-node server
        # answers one request at a time, so this saves the client-side time of one, not a scan.
        dense = self._pool.submit(self._dense, collection, query, limit, filters)
        first = (
            self._pool.submit(
                self._scan, collection, patterns[0] if small else patterns[-1], None if small else window, filters
            )
            if patterns
            else None
        )
        dense_rows = dense.result()
        if first is None:
            only_dense = {
                memory_id: Candidate(memory_id, payload, similarity(space, distance), 0.0)
                for memory_id, payload, _document, distance in dense_rows
                if belongs(payload, user_id) and matches(payload, filters)
            }
            return Candidates(items=list(only_dense.values()), keyword_exhaustive=True, keyword_ceiling=1.0)
        documents, complete = first.result()
        if len(patterns) > 1 and not small:
            # The first scan asked for memories holding two or more query terms; with `limit` of
            # them, single-term matches would all rank below: only fewer calls for the second scan.
            complete = False
            if len(documents) < limit:
                singles, complete = self._scan(collection, patterns[0], window, filters)
                documents = {**documents, **singles}
        # The user's idf of each query term, from every memory seen holding one (see idf_weights).
        held = {memory_id: held_terms(document, None) for memory_id, document in documents.items()}
        for memory_id, payload, document, _distance in dense_rows:
            held.setdefault(memory_id, held_terms(document, payload.get(TEXT_KEY)))
        weights = idf_weights(terms, list(held.values()), collection.count())
        # The neighbours call of the same search (same thread, next) scores on this scale.
        self._recent.weights = (user_id, text, weights)
        found: dict[str, Candidate] = {}
        for memory_id, payload, _document, distance in dense_rows:
            if belongs(payload, user_id) and matches(payload, filters):
                share = weighted_share(held[memory_id], weights)
                found[memory_id] = Candidate(memory_id, payload, similarity(space, distance), share)
        shares = {memory_id: weighted_share(held[memory_id], weights) for memory_id in documents}
        # Best share first; among equals, storage order (the order the scans returned them).
        ranked = sorted((m for m in shares if shares[m] > 0), key=lambda m: -shares[m])
        exhaustive = complete and len(ranked) <= limit
        missing = [memory_id for memory_id in ranked[:limit] if memory_id not in found]
        if missing:
            q = np.asarray(query, dtype=np.float32)
            got = collection.get(ids=missing, include=["metadatas", "embeddings"])
            for memory_id, metadata, embedding in _rows(got, "metadatas", "embeddings"):
                payload = dict(metadata or {})
                if belongs(payload, user_id) and matches(payload, filters):
                    found[memory_id] = Candidate(memory_id, payload, cosine(q, embedding), shares[memory_id])
        # `keyword` is already the idf-weighted share of the query a memory holds: its ceiling is 1.
        return Candidates(items=list(found.values()), keyword_exhaustive=exhaustive, keyword_ceiling=1.0)

    @staticmethod
    def _dense(
        collection: Collection, query: list[float], limit: int, filters: SearchFilters | None
    ) -> list[tuple[str, dict[str, Any], str | None, float]]:
        """The `limit` nearest memories passing `filters`, as (id, payload, document, distance).

        A Chroma `where` costs in proportion to the records it lets through (a broad filter over
        10,000 memories: ~150 ms; one that matches few: ~3 ms), while an unfiltered query is ~8 ms.
        So with filters, first the `DENSE_OVERFETCH * limit` nearest unfiltered, filtered here; only
        when too few of them pass (a narrow filter: the cheap case) is the engine asked to filter.
        """
        include = ["metadatas", "documents", "distances"]

        def ask(n: int, where: dict[str, Any] | None) -> list[tuple[str, dict[str, Any], str | None, float]]:
            result = collection.query(query_embeddings=[query], n_results=n, where=where, include=include)
            return [
                (memory_id, dict(metadata or {}), document, float(distance))
                for memory_id, metadata, document, distance in _rows(
                    result, "metadatas", "documents", "distances", nested=True
                )
                if distance is not None
            ]

        where = search_where(filters)
        if where is None:
            return ask(limit, None)
        wide = ask(DENSE_OVERFETCH * limit, None)
        passing = [row for row in wide if matches(row[1], filters)]
        if len(passing) >= limit or len(wide) < DENSE_OVERFETCH * limit:
            return passing[:limit]
        return ask(limit, where)

    @staticmethod
    def _scan(
        collection: Collection, pattern: str, window: int | None, filters: SearchFilters | None
    ) -> tuple[dict[str, str | None], bool]:
        """Up to `window` memories whose document matches `pattern` and passing `filters`:
        ({id: document}, whether that is all of them).

        Filters as in `_dense`: first an unfiltered scan, filtered here. When the scan was cut at
        `window` and fewer than a quarter of it passed, the filter is narrow, so the engine's
        filtered scan is the cheap one and is asked instead; otherwise the side keeps what passed.
        A date range goes to the engine at once: Chroma returns matches oldest first, so an
        unfiltered window says nothing about recent memories.
        """

        def ask(where: dict[str, Any] | None, include: list[Any]) -> list[tuple[str, Any, Any]]:
            got = collection.get(where=where, where_document={"$regex": pattern}, limit=window, include=include)
            return _rows(got, "documents", "metadatas")

        where = search_where(filters)
        dated = filters is not None and (filters.created_after is not None or filters.created_before is not None)
        if where is None or dated or window is None:  # window None: every match (a small user's)
            rows = ask(where, ["documents"])
            return {memory_id: document for memory_id, document, _ in rows}, window is None or len(rows) < window
        rows = ask(None, ["documents", "metadatas"])
        passing = {memory_id: document for memory_id, document, metadata in rows if matches(metadata or {}, filters)}
        if len(rows) < window:
            return passing, True
        if 4 * len(passing) >= window:
            return passing, False
        rows = ask(where, ["documents"])
        return {memory_id: document for memory_id, document, _ in rows}, len(rows) < window

    def neighbours(self, user_id: str, seqs: Sequence[int], vector: Sequence[float], text: str = "") -> list[Candidate]:
        """The user's memories at the given write positions, with their cosine to `vector` and the
        share of `text`'s terms they hold (the scale of `candidates`): one call."""
        wanted = sorted({int(s) for s in seqs})
        if not wanted:
            return []
        q = np.asarray([float(x) for x in vector], dtype=np.float32)
        terms = query_terms(text)
        recent = getattr(self._recent, "weights", None)
        weights = recent[2] if recent is not None and recent[:2] == (user_id, text) else None

        def lookup(collection: Collection, _space: str) -> list[Candidate]:
            got = collection.get(where={SEQ_KEY: {"$in": wanted}}, include=["metadatas", "embeddings", "documents"])
            out = []
            for memory_id, metadata, embedding, document in _rows(got, "metadatas", "embeddings", "documents"):
                payload = dict(metadata or {})
                if belongs(payload, user_id) and payload.get(SEQ_KEY) in wanted:
                    held = held_terms(document, payload.get(TEXT_KEY))
                    if weights is not None:
                        share = weighted_share(held, weights)
                    else:
                        share = sum(1 for t in terms if t in held) / len(terms) if terms else 0.0
                    out.append(Candidate(memory_id, payload, cosine(q, embedding), share))
            return out

        none: list[Candidate] = []
        return self._on_user(user_id, lookup, none)

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Current payloads of `ids`: one catalog lookup, then one call per user they belong to."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        by_user: dict[str, list[str]] = {}
        for start in range(0, len(wanted), self._batch):
            for memory_id, user in self._owners(wanted[start : start + self._batch]).items():
                by_user.setdefault(user, []).append(memory_id)
        found: dict[str, dict[str, Any]] = {}
        for user, user_ids in by_user.items():

            def get_payloads(
                collection: Collection, _space: str, user: str = user, user_ids: list[str] = user_ids
            ) -> None:
                for start in range(0, len(user_ids), self._batch):
                    got = collection.get(ids=user_ids[start : start + self._batch], include=["metadatas"])
                    for memory_id, metadata in _rows(got, "metadatas"):
                        payload = dict(metadata or {})
                        if payload.get(USER_KEY) == user:
                            found[memory_id] = payload

            self._on_user(user, get_payloads, None)
        return found

    def list_user(self, user_id: str, limit: int | None = None) -> list[Hit]:
        """The user's memories, a page of `PAGE` per engine call, in storage order."""

        def pages(collection: Collection, _space: str) -> list[Hit]:
            hits: list[Hit] = []
            offset = 0
            while limit is None or len(hits) < limit:
                page = PAGE if limit is None else min(PAGE, limit - len(hits))
                rows = _rows(collection.get(limit=page, offset=offset, include=["metadatas"]), "metadatas")
                hits.extend(Hit(id=m, payload=dict(p or {})) for m, p in rows if belongs(p, user_id))
                if len(rows) < page:
                    break
                offset += len(rows)
            return hits

        none: list[Hit] = []
        return self._on_user(user_id, pages, none)

    def count_user(self, user_id: str) -> int:
        """Chroma's count of the user's collection: one call, no payloads read."""
        return self._on_user(user_id, lambda collection, _space: int(collection.count()), 0)

    def ping(self) -> dict[str, Any]:
        return {"kind": self.kind, "heartbeat": self.client.heartbeat()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- maintenance ---------------------------------------------------------------------------
    def reanalyse(self) -> int:
        """Rewrites every document whose analysed form is not what `analysed` makes of its text
        today (after a change to `shared.search.text.tokenize`). A full scan, for an operator to run
        once; returns how many documents changed."""
        changed = 0
        for collection in self._user_collections():
            offset = 0
            while True:
                got = collection.get(limit=PAGE, offset=offset, include=["metadatas", "documents", "embeddings"])
                rows = _rows(got, "metadatas", "documents", "embeddings")
                offset += len(rows)
                stale = [
                    (memory_id, analysed(str((metadata or {}).get(TEXT_KEY) or "")), embedding)
                    for memory_id, metadata, document, embedding in rows
                    if analysed(str((metadata or {}).get(TEXT_KEY) or "")) != document and embedding is not None
                ]
                if stale:
                    # with a vector each: Chroma would embed a new document itself otherwise
                    collection.update(
                        ids=[memory_id for memory_id, _, _ in stale],
                        embeddings=[[float(x) for x in embedding] for _, _, embedding in stale],
                        documents=[document for _, document, _ in stale],
                    )
                    changed += len(stale)
                if len(rows) < PAGE:
                    break
        return changed

    def migrate(self, source: str | None = None) -> int:
        """Moves memories of the old single-collection layout (mem0's own Chroma adapter, collection
        `source`, default `collection_name`) into this layout, numbering each user's in creation
        order after the user's last `_seq`. Memories already in the catalog are skipped, so it can be
        re-run; the source collection is left as it was (delete it once satisfied). A full scan, for an
        operator to run once. Returns how many memories were moved."""
        legacy = self.client.get_collection(name=source or self.collection_name, embedding_function=None)
        moved = 0
        offset = 0
        while True:
            got = legacy.get(limit=PAGE, offset=offset, include=["metadatas", "embeddings"])
            rows = _rows(got, "metadatas", "embeddings")
            offset += len(rows)
            known = self._owners([memory_id for memory_id, _, _ in rows])
            fresh = [
                (memory_id, dict(metadata or {}), embedding)
                for memory_id, metadata, embedding in rows
                if memory_id not in known and isinstance((metadata or {}).get(USER_KEY), str) and embedding is not None
            ]
            by_user: dict[str, list[tuple[str, dict[str, Any], Any]]] = {}
            for row in fresh:
                by_user.setdefault(row[1][USER_KEY], []).append(row)
            for user_rows in by_user.values():
                user_rows.sort(key=lambda row: (timestamp(row[1].get("created_at")) or 0.0, row[0]))
            if by_user:
                first = self._reserve({u: [row[0] for row in user_rows] for u, user_rows in by_user.items()})
                for user, user_rows in by_user.items():
                    payloads = [derive(row[1], first[user] + n) for n, row in enumerate(user_rows)]
                    self._write(user, [row[0] for row in user_rows], [row[2] for row in user_rows], payloads)
                    moved += len(user_rows)
            if len(rows) < PAGE:
                return moved

    # mem0's `list` comes last: below it, `list[...]` in an annotation would name this method.
    def list(self, filters: dict[str, Any] | None = None, top_k: int | None = None) -> list[list[Hit]]:
        user = self._required_user(filters)
        inner = mem0_where({k: v for k, v in (filters or {}).items() if k != USER_KEY})
        whole = mem0_where(filters)

        def list_user(collection: Collection, _space: str) -> list[list[Hit]]:
            got = collection.get(where=inner, limit=top_k, include=["metadatas"])
            hits = [Hit(id=memory_id, payload=dict(metadata or {})) for memory_id, metadata in _rows(got, "metadatas")]
            return [[hit for hit in hits if hit.payload.get(USER_KEY) == user and where_matches(hit.payload, whole)]]

        return self._on_user(user, list_user, [[]])
