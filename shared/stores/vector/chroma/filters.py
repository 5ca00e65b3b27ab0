"""Filters for Chroma: mem0's filter dicts and the API's search filters as Chroma `where`s, and
the same conditions checked on a payload (for results filtered here rather than in the engine)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.errors import ValidationFailed
from shared.query.filters import AllOf, AnyOf, Compare, Condition, NoneOf

if TYPE_CHECKING:
    from shared.contract import SearchFilters

# chromadb's parameter types (TypedDict `where`s, numpy-or-sequence unions) are stricter than the
# plain dicts and lists built here, and the server validates every call anyway.
Collection = Any

logger = logging.getLogger(__name__)


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


def search_where(filters: SearchFilters | None, now: float | None = None) -> dict[str, Any] | None:
    """The API's search filters and "not expired" as a Chroma `where` inside a user's collection."""
    from shared.stores.vector.port import live_condition

    return translate(live_condition(filters, now))


def translate(condition: Condition | None) -> dict[str, Any] | None:
    """A filter tree (shared/query/filters.py) as a Chroma `where`.

    Chroma has no NOT: `NOT [a, b]` becomes `(not a) and (not b)`, each negation pushed down to the
    comparisons by De Morgan (`ne` for `eq`, `nin` for `in`, `lte` for `gt`, ...). The one place
    this differs from the Qdrant engines: a negated `gt`/`gte`/`lt`/`lte` does not hold for a
    memory without the key (Chroma cannot name a missing key). `contains` has no Chroma form on a
    metadata string and is refused.
    """
    if condition is None:
        return None
    return _where(condition, negated=False)


def _where(condition: Condition, negated: bool) -> dict[str, Any]:
    if isinstance(condition, AllOf | AnyOf):
        joined = "$and" if isinstance(condition, AllOf) != negated else "$or"
        parts = [_where(part, negated) for part in condition.parts]
        return combine(parts, joined) or {}
    if isinstance(condition, NoneOf):
        # none of them holds = all of their negations hold (and its negation: any of them holds)
        parts = [_where(part, not negated) for part in condition.parts]
        return combine(parts, "$or" if negated else "$and") or {}
    key, op, value = condition.key, condition.op, condition.value
    if op == "contains":
        raise UnsupportedFilter(f"'contains' (on '{key}') is not supported by the Chroma store")
    chroma_op = _MEM0_OPERATORS.get(op) or _MEM0_SET_OPERATORS[op]
    if negated:
        chroma_op = _NEGATED[chroma_op]
    if chroma_op in ("$in", "$nin"):
        if all(isinstance(v, str) for v in value):
            return {key: {chroma_op: list(value)}}
        # Chroma's lists hold one type; numbers and booleans go one by one, with equality's rules.
        one_by_one = [_where(Compare(key, "eq" if chroma_op == "$in" else "ne", v), False) for v in value]
        return combine(one_by_one, "$or" if chroma_op == "$in" else "$and") or {}
    if chroma_op in ("$eq", "$ne") and _is_number(value) and float(value).is_integer():
        # Chroma keeps ints and floats apart: 2 must also find 2.0 (and 2.0 find 2).
        both = [{key: {chroma_op: int(value)}}, {key: {chroma_op: float(value)}}]
        return {"$or" if chroma_op == "$eq" else "$and": both}
    return {key: {chroma_op: value}}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class UnsupportedFilter(ValidationFailed):
    """A filter the Chroma engine cannot run (a 422, as any filter the contract refuses)."""
