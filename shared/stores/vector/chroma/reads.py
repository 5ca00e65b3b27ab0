"""The port's reads on the Chroma layout that are not searches: payloads by id, a page in write order,
the stats (shared/stores/vector/reads.py says what a page and the stats are).

Chroma's `get` has no order, so a page reads windows of `_seq` numbers downwards from the cursor's
(or from the user's counter in the catalog, one past the highest `_seq` given out): every memory in a
window comes back, and once the windows read hold a page of memories older than the cursor, the
page is the newest of them. A user's `_seq` numbers are dense but for deleted memories, so the first
window (the page's size) is usually the only one. Across a gap the windows widen (four times over
an empty one), a window that finds nothing asks whether anything older is left at all, and one
that holds more than a call returns (`WINDOW`, or two pages) is read again narrower: no call
brings more payloads than that, whatever the gaps.

Chroma has no facets either: the stats count the user's payloads a page at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shared.query.filters import Compare, all_of
from shared.stores.vector.chroma.filters import mem0_where, translate, where_matches
from shared.stores.vector.chroma.queries import PAGE, result_rows, similarity
from shared.stores.vector.port import (
    SEQ_KEY,
    USER_KEY,
    Candidate,
    Hit,
    Position,
    Tally,
    Twins,
    belongs,
    is_twin,
    live,
    twin_conditions,
)
from shared.stores.vector.reads import newest_first, position, tally_payloads

if TYPE_CHECKING:
    from shared.contract import SearchFilters

WINDOW = 1000  # the most payloads one call of a page returns (two pages, when larger)
_T = TypeVar("_T")


class Layout(Protocol):
    """What these reads use of `ChromaVectorStore` (store.py imports this module)."""

    _batch: int

    def owners(self, ids: Sequence[str]) -> dict[str, str]: ...

    def _on_user(self, user_id: str, call: Callable[[Any, str], _T], missing: _T, create: bool = False) -> _T: ...


def fetch(store: Layout, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Current payloads of `ids`: one catalog lookup, then one call per user they belong to."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    by_user: dict[str, list[str]] = {}
    for start in range(0, len(wanted), store._batch):
        for memory_id, user in store.owners(wanted[start : start + store._batch]).items():
            by_user.setdefault(user, []).append(memory_id)
    found: dict[str, dict[str, Any]] = {}
    for user, user_ids in by_user.items():

        def get_payloads(collection: Any, _space: str, user: str = user, user_ids: list[str] = user_ids) -> None:
            for start in range(0, len(user_ids), store._batch):
                got = collection.get(ids=user_ids[start : start + store._batch], include=["metadatas"])
                for memory_id, metadata in result_rows(got, "metadatas"):
                    payload = dict(metadata or {})
                    if payload.get(USER_KEY) == user:
                        found[memory_id] = payload

        store._on_user(user, get_payloads, None)
    return found


def page(
    collection: Any,
    user_id: str,
    limit: int,
    before: Position | None,
    filters: SearchFilters | None,
    top: Callable[[], int],
) -> list[Hit]:
    """Up to `limit` live memories passing `filters` older than `before`, newest first; `top()` is one
    past the user's highest `_seq`."""
    if limit <= 0:
        return []
    scope = filters.condition() if filters is not None else None
    cap = max(WINDOW, 2 * limit)  # the most payloads one call returns
    high = top() if before is None else min(before[0] + 1, top())  # the windows' exclusive upper end
    width = limit + 1
    found: list[Hit] = []
    while high > 0:
        low = max(0, high - width)
        where = translate(all_of(scope, Compare(SEQ_KEY, "gte", low), Compare(SEQ_KEY, "lt", high)))
        rows = result_rows(collection.get(where=where, limit=cap + 1, include=["metadatas"]), "metadatas")
        if len(rows) > cap and width > 1:  # cut, so not the whole window: a narrower one
            width = max(1, width // 4)
            continue
        for memory_id, metadata in rows:
            hit = Hit(id=memory_id, payload=dict(metadata or {}))
            at = position(hit)
            # "Not expired" is checked here, not sent to Chroma (see queries.keyword_scan).
            live_here = belongs(hit.payload, user_id) and live(hit.payload, filters)
            if live_here and at is not None and (before is None or at < before):
                found.append(hit)
        high = low
        if len(found) >= limit or (not rows and not _any_below(collection, scope, high)):
            break
        width *= 2 if rows else 4
    return newest_first(found, before, limit)


def _any_below(collection: Any, scope: Any, high: int) -> bool:
    """Whether the user's collection holds a memory passing `scope` under `_seq` `high` (ids only)."""
    if high <= 0:
        return False
    got = collection.get(where=translate(all_of(scope, Compare(SEQ_KEY, "lt", high))), limit=1, include=[])
    return bool(got.get("ids"))


def tally(collection: Any, user_id: str) -> Tally:
    """The stats of the user's live memories, their payloads read a page at a time and counted."""

    def payloads() -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            rows = result_rows(collection.get(limit=PAGE, offset=offset, include=["metadatas"]), "metadatas")
            for _memory_id, metadata in rows:
                payload = dict(metadata or {})
                if belongs(payload, user_id) and live(payload):
                    yield payload
            if len(rows) < PAGE:
                return
            offset += len(rows)

    return tally_payloads(payloads())


# The nearest memories a duplicate check asks for per item without a filter (a Chroma `where` costs in
# proportion to what it lets through: see queries.nearest); an item none of which is of the scope asks
# again with the filter.
TWIN_WINDOW = 4


def twins(
    collection: Any, space: str, user_id: str, scope: str, keys: Sequence[str], vectors: Sequence[Sequence[float]]
) -> Twins:
    """The port's `twins` on the user's collection: one `get` by `_norm`, one query for every vector
    (unfiltered, checked here), and one filtered query for the items whose window held none."""
    from shared.query.sameness import EXACT_ROOM

    near, exact = twin_conditions(scope, keys)
    found: list[Hit] = []
    if keys:
        got = collection.get(where=translate(exact), limit=EXACT_ROOM * len(keys), include=["metadatas"])
        found = [Hit(memory_id, dict(metadata or {})) for memory_id, metadata in result_rows(got, "metadatas")]
    nearest: list[Candidate | None] = [None] * len(vectors)

    def ask(positions: list[int], n: int, where: dict[str, Any] | None) -> list[int]:
        queries = [[float(x) for x in vectors[i]] for i in positions]
        include = ["metadatas", "distances"]
        result = collection.query(query_embeddings=queries, n_results=n, where=where, include=include)
        short = []
        for row, i in enumerate(positions):
            ids, metadatas, distances = result["ids"][row], result["metadatas"][row], result["distances"][row]
            for memory_id, metadata, distance in zip(ids, metadatas, distances, strict=True):
                if is_twin(dict(metadata or {}), user_id, near):
                    nearest[i] = Candidate(str(memory_id), dict(metadata or {}), similarity(space, distance))
                    break
            else:
                if len(ids) >= n:
                    short.append(i)
        return short

    if vectors:
        again = ask(list(range(len(vectors))), TWIN_WINDOW, None)
        if again:
            ask(again, 1, translate(near))
    return Twins([hit for hit in found if is_twin(hit.payload, user_id, exact)], nearest)


def mem0_list(collection: Any, user: str, filters: dict[str, Any] | None, top_k: int | None) -> list[Hit]:
    """mem0's `list` in one user's collection: up to `top_k` memories passing mem0's `filters`."""
    inner = mem0_where({k: v for k, v in (filters or {}).items() if k != USER_KEY})
    whole = mem0_where(filters)
    got = collection.get(where=inner, limit=top_k, include=["metadatas"])
    hits = [Hit(id=m, payload=dict(meta or {})) for m, meta in result_rows(got, "metadatas")]
    return [hit for hit in hits if hit.payload.get(USER_KEY) == user and where_matches(hit.payload, whole)]
