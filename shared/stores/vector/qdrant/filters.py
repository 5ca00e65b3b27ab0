"""The API's search filters and mem0's filter dicts as Qdrant filters, and the same conditions on a payload."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from qdrant_client import models

from shared.stores.vector.port import (
    TS_KEY,
    USER_KEY,
    timestamp,
)

if TYPE_CHECKING:
    from shared.contract import SearchFilters
from shared.stores.vector.qdrant.schema import CATEGORY_KEY

LOGICAL_KEYS = frozenset({"AND", "OR", "NOT", "$and", "$or", "$not"})


# --- filters -------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(key: str, value: Any) -> models.Condition:
    """Exact equality with the port's meaning: bool only equals bool, 2 equals 2.0.

    Qdrant keeps bool, integer and float apart in a match, and a match takes no float at all, so
    numbers become a closed range (which never matches a bool); strings and bools a match.
    """
    if _is_number(value):
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    if isinstance(value, bool | str):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    raise ValueError(f"unsupported filter value for '{key}': {value!r}")


def _one_of(key: str, values: Sequence[Any]) -> models.Condition:
    values = builtins.list(values)
    if not values:
        # "one of nothing" selects nothing, as in `_same_any`: no point has an id in an empty set.
        return models.HasIdCondition(has_id=[])
    if all(isinstance(v, str) for v in values):
        return models.FieldCondition(key=key, match=models.MatchAny(any=values))
    # Numbers and bools keep the rule of `_equals` (a MatchAny would mix them up or refuse floats).
    return models.Filter(should=[_equals(key, v) for v in values])


def _same(stored: Any, value: Any) -> bool:
    if isinstance(stored, bool) != isinstance(value, bool):
        return False
    if _is_number(value):
        return _is_number(stored) and stored == value
    return bool(stored == value)


def _same_any(stored: Any, values: Sequence[Any]) -> bool:
    return any(_same(stored, v) for v in values)


_RANGE_OPS = ("gt", "gte", "lt", "lte")


def _mem0_conditions(filters: Mapping[str, Any] | None) -> tuple[builtins.list[Any], builtins.list[Any]]:
    """mem0's filter dict as Qdrant conditions: (must, must_not).

    Supported: `{key: scalar}`, `{key: [a, b]}` and `{key: {"in": [...]}}` (one of), `"*"` (any),
    `{"eq"|"ne"|"nin": ...}` and numeric `gt/gte/lt/lte`. The logical forms (AND/OR/NOT) and text
    operators are refused rather than half-supported: the service never sends them.
    """
    must: builtins.list[Any] = []
    must_not: builtins.list[Any] = []
    for key, value in (filters or {}).items():
        if value is None or value == "*":
            continue
        if key in LOGICAL_KEYS:
            raise ValueError(f"logical filter '{key}' is not supported by the Qdrant adapter")
        if isinstance(value, builtins.list | tuple):
            must.append(_one_of(key, value))
        elif isinstance(value, Mapping):
            ops = set(value)
            if ops <= set(_RANGE_OPS):
                if not all(_is_number(value[op]) for op in ops):
                    raise ValueError(f"range filter on '{key}' needs numbers")
                must.append(models.FieldCondition(key=key, range=models.Range(**{op: value[op] for op in ops})))
            elif ops == {"eq"}:
                must.append(_equals(key, value["eq"]))
            elif ops == {"in"}:
                must.append(_one_of(key, value["in"]))
            elif ops == {"ne"}:
                must_not.append(_equals(key, value["ne"]))
            elif ops == {"nin"}:
                must_not.extend(_equals(key, v) for v in value["nin"])
            else:
                raise ValueError(f"unsupported filter operator(s) for '{key}': {sorted(ops)}")
        else:
            must.append(_equals(key, value))
    return must, must_not


def _mem0_holds(payload: Mapping[str, Any], filters: Mapping[str, Any] | None) -> bool:
    """The same filter dict evaluated on a payload (an engine filter is never trusted alone)."""
    for key, value in (filters or {}).items():
        if value is None or value == "*":
            continue
        stored = payload.get(key)
        if isinstance(value, builtins.list | tuple):
            ok = _same_any(stored, value)
        elif isinstance(value, Mapping):
            ops = set(value)
            if ops <= set(_RANGE_OPS):
                ok = _is_number(stored) and all(
                    {"gt": stored > v, "gte": stored >= v, "lt": stored < v, "lte": stored <= v}[op]
                    for op, v in value.items()
                )
            elif ops == {"eq"}:
                ok = _same(stored, value["eq"])
            elif ops == {"in"}:
                ok = _same_any(stored, value["in"])
            elif ops == {"ne"}:
                ok = not _same(stored, value["ne"])
            elif ops == {"nin"}:
                ok = not _same_any(stored, value["nin"])
            else:
                ok = False
        else:
            ok = _same(stored, value)
        if not ok:
            return False
    return True


def _user_condition(user_id: str) -> models.FieldCondition:
    return models.FieldCondition(key=USER_KEY, match=models.MatchValue(value=user_id))


def search_filter(user_id: str, filters: SearchFilters | None) -> models.Filter:
    """The user and the API's search filters as one Qdrant filter (the meaning of `port.matches`)."""
    must: builtins.list[Any] = [_user_condition(user_id)]
    if filters is not None:
        for key, value in (filters.metadata or {}).items():
            must.append(_equals(key, value))
        if filters.categories:
            must.append(models.FieldCondition(key=CATEGORY_KEY, match=models.MatchAny(any=list(filters.categories))))
        after = timestamp(filters.created_after) if filters.created_after is not None else None
        before = timestamp(filters.created_before) if filters.created_before is not None else None
        if after is not None or before is not None:
            must.append(models.FieldCondition(key=TS_KEY, range=models.Range(gte=after, lt=before)))
    return models.Filter(must=must)
