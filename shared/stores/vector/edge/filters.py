"""The API's search filters and mem0's filter dicts as Qdrant Edge filters, executed by the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from shared.query.filters import AllOf, AnyOf, Compare, Condition, NoneOf
from shared.scope import key_tenant
from shared.stores.vector.port import TENANT_KEY, USER_KEY

if TYPE_CHECKING:
    from shared.contract import SearchFilters
    from shared.query.filters import Validity


def key_condition(user_id: str) -> Any:
    """The storage key alone: what the BM25 statistics are counted over (no memory is read back)."""
    from qdrant_edge import FieldCondition, MatchValue

    return FieldCondition(key=USER_KEY, match=MatchValue(user_id))


def user_condition(user_id: str) -> Any:
    """The storage key's memories: its `user_id`, and its tenant's `_tenant` (none for a key without one)."""
    from qdrant_edge import FieldCondition, Filter, IsEmptyCondition, MatchValue

    tenant = key_tenant(user_id)
    of_tenant = (
        IsEmptyCondition(TENANT_KEY) if tenant is None else FieldCondition(key=TENANT_KEY, match=MatchValue(tenant))
    )
    return Filter(must=[FieldCondition(key=USER_KEY, match=MatchValue(user_id)), of_tenant])


def search_filter(
    user_id: str, filters: SearchFilters | None, now: float | None = None, validity: Validity | None = None
) -> Any:
    """The user, the search filters and "not expired" as one engine filter (the meaning of `port.matches`)."""
    from qdrant_edge import Filter

    from shared.stores.vector.port import live_condition

    return Filter(must=[user_condition(user_id), translate(live_condition(filters, now, validity))])


def translate(condition: Condition | None) -> Any:
    """A filter tree (shared/query/filters.py) as a Qdrant Edge filter."""
    from qdrant_edge import Filter

    if condition is None:
        return Filter(must=[])
    if isinstance(condition, AllOf):
        return Filter(must=[translate(part) for part in condition.parts])
    if isinstance(condition, AnyOf):
        return Filter(should=[translate(part) for part in condition.parts])
    if isinstance(condition, NoneOf):
        return Filter(must_not=[translate(part) for part in condition.parts])
    return _compare(condition)


def _compare(condition: Compare) -> Any:
    from qdrant_edge import FieldCondition, Filter, MatchAny, MatchText, RangeFloat

    key, op, value = condition.key, condition.op, condition.value
    if op == "eq":
        return _equals(key, value)
    if op == "ne":
        return Filter(must_not=[_equals(key, value)])
    if op in ("in", "nin"):
        if all(isinstance(v, str) for v in value):
            one_of: Any = FieldCondition(key=key, match=MatchAny(list(value)))
        else:
            one_of = Filter(should=[_equals(key, v) for v in value])
        return one_of if op == "in" else Filter(must_not=[one_of])
    if op == "contains":
        # No full-text index on metadata keys: the engine matches the text as a substring.
        return FieldCondition(key=key, match=MatchText(value))
    return FieldCondition(key=key, range=RangeFloat(**{op: float(value)}))


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
