"""The engine calls behind the Chroma adapter's hybrid candidates: the dense query, the keyword
scans, and how their answers are read (the design is in the package's docstring)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.query.filters import holds
from shared.stores.vector.chroma.filters import search_where
from shared.stores.vector.chroma.keywords import held_terms, idf_weights, keyword_patterns, query_terms, weighted_share
from shared.stores.vector.port import (
    SEQ_KEY,
    TEXT_KEY,
    Candidate,
    Candidates,
    belongs,
    live,
    live_condition,
)

if TYPE_CHECKING:
    from shared.contract import SearchFilters
    from shared.query.filters import Validity

# chromadb's parameter types (TypedDict `where`s, numpy-or-sequence unions) are stricter than the
# plain dicts and lists built here, and the server validates every call anyway.
Collection = Any

logger = logging.getLogger(__name__)

# Each keyword scan returns up to this many times `limit` documents, ranked here by matched share.
KEYWORD_WINDOW = 2
# With search filters, the dense side first asks for this many times `limit` unfiltered neighbours.
DENSE_OVERFETCH = 4
# A user with at most this many times `limit` memories gets every keyword match in one scan.
SMALL_USER = 10
# Page size when listing or migrating; Chroma answers one page per call.
PAGE = 1000


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


def result_rows(result: Mapping[str, Any], *keys: str, nested: bool = False) -> list[tuple[Any, ...]]:
    """A Chroma result as rows of (id, *keys); absent columns read as None. `nested`: a query's first list."""

    def column(key: str) -> list[Any] | None:
        value = result.get(key)
        if value is None:
            return None
        return list(value[0]) if nested else list(value)

    ids = column("ids") or []
    columns = [column(key) or [None] * len(ids) for key in keys]
    return [(str(memory_id), *values) for memory_id, *values in zip(ids, *columns, strict=True)]


def memory_key(memory_id: str) -> str:
    return f"m:{memory_id}"


def digest(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def hybrid_candidates(
    pool: ThreadPoolExecutor,
    collection: Collection,
    space: str,
    user_id: str,
    vector: Sequence[float],
    text: str,
    limit: int,
    filters: SearchFilters | None,
) -> tuple[Candidates, dict[str, float] | None]:
    """The port's `candidates` on one user's collection, and the idf weights of the query's terms."""
    terms = query_terms(text)
    patterns = keyword_patterns(terms)
    query = [float(x) for x in vector]
    window = KEYWORD_WINDOW * limit
    # A small user's matches all fit in one answer: one scan for any term, nothing cut off.
    small = bool(patterns) and collection.count() <= SMALL_USER * limit
    # The dense query and the first keyword scan go out together. Chroma's single-node server
    # answers one request at a time, so this saves the client-side time of one, not a scan.
    dense = pool.submit(nearest, collection, query, limit, filters)
    first = (
        pool.submit(
            keyword_scan, collection, patterns[0] if small else patterns[-1], None if small else window, filters
        )
        if patterns
        else None
    )
    dense_rows = dense.result()
    if first is None:
        only_dense = {
            memory_id: Candidate(memory_id, payload, similarity(space, distance), 0.0)
            for memory_id, payload, _document, distance in dense_rows
            if belongs(payload, user_id) and live(payload, filters)
        }
        return Candidates(items=list(only_dense.values()), keyword_exhaustive=True, keyword_ceiling=1.0), None
    documents, complete = first.result()
    if len(patterns) > 1 and not small:
        # The first scan asked for memories holding two or more query terms; with `limit` of
        # them, single-term matches would all rank below: only fewer calls for the second scan.
        complete = False
        if len(documents) < limit:
            singles, complete = keyword_scan(collection, patterns[0], window, filters)
            documents = {**documents, **singles}
    # The user's idf of each query term, from every memory seen holding one (see idf_weights).
    held = {memory_id: held_terms(document, None) for memory_id, document in documents.items()}
    for memory_id, payload, document, _distance in dense_rows:
        held.setdefault(memory_id, held_terms(document, payload.get(TEXT_KEY)))
    weights = idf_weights(terms, list(held.values()), collection.count())
    found: dict[str, Candidate] = {}
    for memory_id, payload, _document, distance in dense_rows:
        if belongs(payload, user_id) and live(payload, filters):
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
        for memory_id, metadata, embedding in result_rows(got, "metadatas", "embeddings"):
            payload = dict(metadata or {})
            if belongs(payload, user_id) and live(payload, filters):
                found[memory_id] = Candidate(memory_id, payload, cosine(q, embedding), shares[memory_id])
    # `keyword` is already the idf-weighted share of the query a memory holds: its ceiling is 1.
    return Candidates(items=list(found.values()), keyword_exhaustive=exhaustive, keyword_ceiling=1.0), weights


def nearest(
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
            for memory_id, metadata, document, distance in result_rows(
                result, "metadatas", "documents", "distances", nested=True
            )
            if distance is not None
        ]

    where = search_where(filters)
    if filters is None:  # only "not expired": checked here, the engine asked again only when one was
        rows = ask(limit, None)
        live_rows = [row for row in rows if live(row[1])]
        return live_rows if len(live_rows) == len(rows) else ask(limit, where)
    wide = ask(DENSE_OVERFETCH * limit, None)
    passing = [row for row in wide if live(row[1], filters)]
    if len(passing) >= limit or len(wide) < DENSE_OVERFETCH * limit:
        return passing[:limit]
    return ask(limit, where)


def keyword_scan(
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
        return result_rows(got, "documents", "metadatas")

    where = search_where(filters)
    if filters is None:
        # Only "not expired", checked here: a `where` Chroma evaluates over every record it lets
        # through, which for "not expired" is all of the user's (measured: candidates 6x slower).
        rows = ask(None, ["documents", "metadatas"])
        kept = {memory_id: document for memory_id, document, metadata in rows if live(metadata)}
        return kept, window is None or len(rows) < window
    dated = filters.created_after is not None or filters.created_before is not None
    if dated or window is None:  # window None: every match (a small user's)
        rows = ask(where, ["documents"])
        return {memory_id: document for memory_id, document, _ in rows}, window is None or len(rows) < window
    rows = ask(None, ["documents", "metadatas"])
    passing = {memory_id: document for memory_id, document, metadata in rows if live(metadata, filters)}
    if len(rows) < window:
        return passing, True
    if 4 * len(passing) >= window:
        return passing, False
    rows = ask(where, ["documents"])
    return {memory_id: document for memory_id, document, _ in rows}, len(rows) < window


def neighbour_candidates(
    collection: Collection,
    user_id: str,
    wanted: Sequence[int],
    vector: Sequence[float],
    text: str,
    weights: dict[str, float] | None,
    validity: Validity | None = None,
) -> list[Candidate]:
    """The user's memories at write positions `wanted`, scored like `hybrid_candidates` (with its
    idf `weights` when they are this search's, else the plain share of the query's terms)."""
    q = np.asarray([float(x) for x in vector], dtype=np.float32)
    terms = query_terms(text)
    # "Not expired" and "valid" are checked on the few memories found, not sent to Chroma (see `keyword_scan`).
    got = collection.get(where={SEQ_KEY: {"$in": list(wanted)}}, include=["metadatas", "embeddings", "documents"])
    out = []
    for memory_id, metadata, embedding, document in result_rows(got, "metadatas", "embeddings", "documents"):
        payload = dict(metadata or {})
        if (
            belongs(payload, user_id)
            and payload.get(SEQ_KEY) in wanted
            and holds(live_condition(None, None, validity), payload)
        ):
            held = held_terms(document, payload.get(TEXT_KEY))
            if weights is not None:
                share = weighted_share(held, weights)
            else:
                share = sum(1 for t in terms if t in held) / len(terms) if terms else 0.0
            out.append(Candidate(memory_id, payload, cosine(q, embedding), share))
    return out


def highest_seq(collection: Collection) -> int:
    """The highest `_seq` stored in a user's collection (-1 when none): a full scan of the user's payloads."""
    got = collection.get(include=["metadatas"])
    numbers = [
        int(s)
        for _, metadata in result_rows(got, "metadatas")
        if isinstance(s := (metadata or {}).get(SEQ_KEY), int | float) and not isinstance(s, bool)
    ]
    return max(numbers) if numbers else -1
