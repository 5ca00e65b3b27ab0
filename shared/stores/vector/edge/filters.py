"""The API's search filters and mem0's filter dicts as Qdrant Edge filters, executed by the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from shared.stores.vector.port import (
    TS_KEY,
    USER_KEY,
)

if TYPE_CHECKING:
    from shared.contract import SearchFilters


def user_condition(user_id: str) -> Any:
    from qdrant_edge import FieldCondition, MatchValue

    return FieldCondition(key=USER_KEY, match=MatchValue(user_id))


def search_filter(user_id: str, filters: SearchFilters | None) -> Any:
    from qdrant_edge import FieldCondition, Filter, MatchAny, RangeFloat

    from shared.stores.vector.port import timestamp

    must: list[Any] = [user_condition(user_id)]
    if filters is not None:
        for key, value in (filters.metadata or {}).items():
            must.append(_equals(key, value))
        if filters.categories:
            must.append(FieldCondition(key="category", match=MatchAny(list(filters.categories))))
        if filters.created_after is not None or filters.created_before is not None:
            must.append(
                FieldCondition(
                    key=TS_KEY,
                    range=RangeFloat(
                        gte=timestamp(filters.created_after) if filters.created_after else None,
                        lt=timestamp(filters.created_before) if filters.created_before else None,
                    ),
                )
            )
    return Filter(must=must)


def mem0_filter(filters: dict[str, Any] | None) -> Any:
    from qdrant_edge import FieldCondition, Filter, MatchAny

    must: list[Any] = []
    for key, value in (filters or {}).items():
        if value is None:
            continue
        if isinstance(value, dict) and "in" in value:
            must.append(FieldCondition(key=key, match=MatchAny(list(value["in"]))))
        else:
            must.append(_equals(key, value))
    return Filter(must=must) if must else None


def _equals(key: str, value: Any) -> Any:
    """Exact equality on a payload value; numbers compare as numbers (1 == 1.0), booleans apart."""
    from qdrant_edge import FieldCondition, MatchValue, RangeFloat

    if isinstance(value, bool):
        # The bindings read a Python bool as the integer 0/1 (which matches no stored boolean);
        # NumPy's bool reaches the engine as a boolean.
        return FieldCondition(key=key, match=MatchValue(np.bool_(value)))  # type: ignore[arg-type]
    if isinstance(value, str):
        return FieldCondition(key=key, match=MatchValue(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return FieldCondition(key=key, match=MatchValue(value))
    return FieldCondition(key=key, range=RangeFloat(gte=float(value), lte=float(value)))
