"""The API's search filters and mem0's filter dicts as Qdrant filters, and the same conditions on a payload."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from qdrant_client import models

from shared.query.filters import AllOf, AnyOf, Condition, NoneOf
from shared.scope import key_tenant
from shared.stores.vector.port import TENANT_KEY, USER_KEY

if TYPE_CHECKING:
    from shared.contract import SearchFilters
    from shared.query.filters import Validity

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


def _user_condition(user_id: str) -> models.Filter:
    """The storage key's memories: its `user_id`, and its tenant's `_tenant` (none for a key without one)."""
    tenant = key_tenant(user_id)
    of_tenant: models.Condition = (
        models.IsEmptyCondition(is_empty=models.PayloadField(key=TENANT_KEY))
        if tenant is None
        else models.FieldCondition(key=TENANT_KEY, match=models.MatchValue(value=tenant))
    )
    return models.Filter(must=[models.FieldCondition(key=USER_KEY, match=models.MatchValue(value=user_id)), of_tenant])


def search_filter(
    user_id: str, filters: SearchFilters | None, now: float | None = None, validity: Validity | None = None
) -> models.Filter:
    """The user, the search filters and "not expired" as one Qdrant filter (the meaning of `port.matches`)."""
    from shared.stores.vector.port import live_condition

    return models.Filter(must=[_user_condition(user_id), translate(live_condition(filters, now, validity))])


def translate(condition: Condition | None) -> models.Filter:
    """A filter tree (shared/query/filters.py) as a Qdrant filter."""
    if condition is None:
        return models.Filter(must=[])
    if isinstance(condition, AllOf):
        return models.Filter(must=[translate(part) for part in condition.parts])
    if isinstance(condition, AnyOf):
        return models.Filter(should=[translate(part) for part in condition.parts])
    if isinstance(condition, NoneOf):
        return models.Filter(must_not=[translate(part) for part in condition.parts])
    key, op, value = condition.key, condition.op, condition.value
    if op == "eq":
        return models.Filter(must=[_equals(key, value)])
    if op == "ne":
        return models.Filter(must_not=[_equals(key, value)])
    if op == "in":
        return models.Filter(must=[_one_of(key, value)])
    if op == "nin":
        return models.Filter(must_not=[_one_of(key, value)])
    if op == "contains":
        # No text index on metadata keys: the engine compares the words of the text.
        return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchText(text=value))])
    return models.Filter(must=[models.FieldCondition(key=key, range=models.Range(**{op: value}))])
