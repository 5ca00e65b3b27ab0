"""The port's bounded reads on a Qdrant server (or local mode): a page in write order (a scroll ordered
by the range-indexed `_seq`), and the stats from the engine's counts and facets
(shared/stores/vector/reads.py)."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from qdrant_client import QdrantClient, models

from shared.query.filters import Compare
from shared.stores.vector.port import (
    SEQ_KEY,
    Candidate,
    Hit,
    Position,
    Tally,
    Twins,
    belongs,
    is_twin,
    matches,
    twin_conditions,
)
from shared.stores.vector.qdrant.client import query_batch
from shared.stores.vector.qdrant.filters import _user_condition, search_filter, translate
from shared.stores.vector.qdrant.schema import PAGE_SIZE
from shared.stores.vector.reads import FACET_LIMIT, ordered_page, tally_by_facets

if TYPE_CHECKING:
    from shared.contract import SearchFilters


class Collection(Protocol):
    """What these reads use of `QdrantServerStore` (store.py imports this module)."""

    client: QdrantClient
    collection_name: str
    _guard: contextlib.AbstractContextManager[Any]


def scroll(store: Collection, only: models.Filter, limit: int | None = None, payload: Any = True) -> Iterator[Hit]:
    """The points passing `only`, at most `limit` (None: all), a page per round trip, with `payload`
    (True, or the fields to read)."""
    offset: models.ExtendedPointId | None = None
    count = 0
    while limit is None or count < limit:
        page = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - count)
        with store._guard:
            records, offset = store.client.scroll(
                store.collection_name,
                scroll_filter=only,
                limit=page,
                offset=offset,
                with_payload=payload,
                with_vectors=False,
            )
        count += len(records)
        yield from (Hit(id=str(record.id), payload=dict(record.payload or {})) for record in records)
        if offset is None:
            return


def page(
    store: Collection, user_id: str, limit: int, before: Position | None, filters: SearchFilters | None
) -> builtins.list[Hit]:
    live = search_filter(user_id, filters)
    newest = models.OrderBy(key=SEQ_KEY, direction=models.Direction.DESC)

    def older(below: int | None, count: int) -> builtins.list[Hit]:
        only = live if below is None else models.Filter(must=[live, translate(Compare(SEQ_KEY, "lt", below))])
        with store._guard:  # an ordered scroll takes no offset: one call of `count`
            records, _ = store.client.scroll(
                store.collection_name, scroll_filter=only, limit=count, order_by=newest, with_payload=True
            )
        return [Hit(id=str(record.id), payload=dict(record.payload or {})) for record in records]

    def at(seq: int) -> builtins.list[Hit]:
        return builtins.list(scroll(store, models.Filter(must=[live, translate(Compare(SEQ_KEY, "eq", seq))])))

    return ordered_page(
        limit, before, older, at, lambda hit: belongs(hit.payload, user_id) and matches(hit.payload, filters)
    )


def tally(store: Collection, user_id: str) -> Tally:
    live = search_filter(user_id, None)

    def lacking(key: str | None) -> models.Filter:
        if key is None:
            return live
        return models.Filter(must=[live, models.IsEmptyCondition(is_empty=models.PayloadField(key=key))])

    def count(only: models.Filter) -> int:
        with store._guard:
            return int(store.client.count(store.collection_name, count_filter=only, exact=True).count)

    def facet(key: str) -> dict[Any, int]:
        with store._guard:
            found = store.client.facet(store.collection_name, key, facet_filter=live, limit=FACET_LIMIT, exact=True)
        return {hit.value: int(hit.count) for hit in found.hits}

    def values(field: str, without: str | None) -> Iterator[Any]:
        for hit in scroll(store, lacking(without), payload=[field]):
            yield hit.payload.get(field)

    total = count(live)
    return tally_by_facets(total, facet, lambda key: count(lacking(key)), values) if total else Tally()


def twins(
    store: Collection, user_id: str, scope: str, keys: Sequence[str], vectors: Sequence[Sequence[float]]
) -> Twins:
    """The port's `twins`: one `query_batch_points` round trip, the nearest live memory of the scope per
    vector (limit 1) and the live memories of the scope whose `_norm` is one of `keys` (no query)."""
    from shared.query.sameness import EXACT_ROOM

    near, exact = twin_conditions(scope, keys)
    only_near = models.Filter(must=[_user_condition(user_id), translate(near)])
    requests = [
        models.QueryRequest(query=[float(x) for x in vector], filter=only_near, limit=1, with_payload=True)
        for vector in vectors
    ]
    if keys:
        only_exact = models.Filter(must=[_user_condition(user_id), translate(exact)])
        requests.append(models.QueryRequest(filter=only_exact, limit=EXACT_ROOM * len(keys), with_payload=True))
    if not requests:
        return Twins()
    with store._guard:
        answers = query_batch(store.client, store.collection_name, requests)
    nearest: builtins.list[Candidate | None] = []
    for answer in answers[: len(vectors)]:
        best = next((p for p in answer.points if is_twin(p.payload or {}, user_id, near)), None)
        nearest.append(Candidate(str(best.id), dict(best.payload or {}), float(best.score)) if best else None)
    found = [Hit(str(p.id), dict(p.payload or {})) for p in (answers[-1].points if keys else [])]
    return Twins([hit for hit in found if is_twin(hit.payload, user_id, exact)], nearest)
