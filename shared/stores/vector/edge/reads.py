"""The port's bounded reads on a Qdrant Edge shard: a page in write order (the engine orders by the
range-indexed `_seq`), and the stats from the engine's counts and facets (shared/stores/vector/reads.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from shared.query.filters import Compare
from shared.stores.vector.edge.filters import search_filter, translate, user_condition
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
from shared.stores.vector.reads import FACET_LIMIT, ordered_page, tally_by_facets

if TYPE_CHECKING:
    from shared.contract import SearchFilters


class Shard(Protocol):
    """What these reads use of `EdgeVectorStore` (store.py imports this module)."""

    shard: Any

    def _scroll(self, only: Any, limit: int | None, payload: Any = True) -> Iterable[Hit]: ...


def page(store: Shard, user_id: str, limit: int, before: Position | None, filters: SearchFilters | None) -> list[Hit]:
    from qdrant_edge import Direction, Filter, OrderBy, QueryRequest

    live = search_filter(user_id, filters)

    def older(below: int | None, count: int) -> list[Hit]:
        only = live if below is None else Filter(must=[live, translate(Compare(SEQ_KEY, "lt", below))])
        request = QueryRequest(limit=count, query=OrderBy(SEQ_KEY, Direction.Desc), filter=only, with_payload=True)
        return [Hit(str(point.id), dict(point.payload or {})) for point in store.shard.query(request)]

    def at(seq: int) -> list[Hit]:
        return list(store._scroll(Filter(must=[live, translate(Compare(SEQ_KEY, "eq", seq))]), None))

    return ordered_page(
        limit, before, older, at, lambda hit: belongs(hit.payload, user_id) and matches(hit.payload, filters)
    )


def tally(store: Shard, user_id: str) -> Tally:
    from qdrant_edge import CountRequest, FacetRequest, Filter, IsEmptyCondition

    live = search_filter(user_id, None)

    def lacking(key: str | None) -> Any:
        return live if key is None else Filter(must=[live, IsEmptyCondition(key)])

    def facet(key: str) -> dict[Any, int]:
        found = store.shard.facet(FacetRequest(key, limit=FACET_LIMIT, exact=True, filter=live))
        return {hit.value: int(hit.count) for hit in found.hits}

    def absent(key: str) -> int:
        return int(store.shard.count(CountRequest(exact=True, filter=lacking(key))))

    def values(field: str, without: str | None) -> Iterator[Any]:
        for hit in store._scroll(lacking(without), None, payload=[field]):
            yield hit.payload.get(field)

    total = int(store.shard.count(CountRequest(exact=True, filter=live)))
    return tally_by_facets(total, facet, absent, values) if total else Tally()


def twins(store: Shard, user_id: str, scope: str, keys: Sequence[str], vectors: Sequence[Sequence[float]]) -> Twins:
    """The port's `twins`: one engine batch, the nearest live memory of the scope per vector (limit 1)
    and the live memories of the scope whose `_norm` is one of `keys` (a filtered lookup, no query)."""
    from qdrant_edge import Filter, Query, QueryBatchRequest, QueryRequest

    from shared.query.sameness import EXACT_ROOM

    near, exact = twin_conditions(scope, keys)
    only_near = Filter(must=[user_condition(user_id), translate(near)])
    requests = [
        QueryRequest(limit=1, query=Query.Nearest(_unit(vector)), filter=only_near, with_payload=True)
        for vector in vectors
    ]
    if keys:
        only_exact = Filter(must=[user_condition(user_id), translate(exact)])
        requests.append(QueryRequest(limit=EXACT_ROOM * len(keys), filter=only_exact, with_payload=True))
    answers = store.shard.query_batch(QueryBatchRequest(requests)) if requests else []
    nearest: list[Candidate | None] = []
    for points in answers[: len(vectors)]:
        best = next((p for p in points if is_twin(p.payload or {}, user_id, near)), None)
        nearest.append(Candidate(str(best.id), dict(best.payload or {}), float(best.score)) if best else None)
    found = [Hit(str(p.id), dict(p.payload or {})) for p in (answers[-1] if keys else [])]
    return Twins([hit for hit in found if is_twin(hit.payload, user_id, exact)], nearest)


def _unit(vector: Sequence[float]) -> list[float]:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return (array / norm if norm else array).tolist()  # type: ignore[no-any-return]
