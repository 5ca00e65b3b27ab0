"""The search filter grammar (mem0's): parsed once into a small typed tree that every store adapter
translates into its engine's own filter, and that `holds` evaluates on a payload with the same meaning.

    {"key": value}                                  equality
    {"key": {"eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin"|"contains": operand, ...}}
    {"AND": [cond, ...]}, {"OR": [cond, ...]}, {"NOT": [cond, ...]}

Several keys (or several operators on one key) in one object must all hold; `NOT` holds when none
of its conditions does. What a comparison means:

- `eq`/`ne`/`in`/`nin`: the same value, numbers as numbers (2 == 2.0), a boolean only equals a
  boolean; `ne` and `nin` hold for a memory without the key;
- `gt`/`gte`/`lt`/`lte`: numbers only, on a stored number;
- `contains`: a stored string holding every word of the operand as a word (words are runs of
  letters and digits, compared lowercased), which is what Qdrant's text match does on a field
  without a text index.

Anything else is a `FilterError` naming where it is (`filters.metadata.age.between`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

# Keys a filter may name: every store engine reads them as a plain field name (Qdrant's JSON paths
# give `.`, `[`, quotes and spaces a meaning; Chroma's `$` prefixes are operators).
FILTER_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
EQUALITY_OPS = ("eq", "ne")
RANGE_OPS = ("gt", "gte", "lt", "lte")
SET_OPS = ("in", "nin")
OPERATORS = (*EQUALITY_OPS, *RANGE_OPS, *SET_OPS, "contains")
LOGICAL = ("AND", "OR", "NOT")
MORTAL_KEY = "_mortal"  # true on a memory that has an `_expires`
EXPIRES_KEY = "_expires"  # derived by the store adapters from `expiration_date` (shared/stores/vector/port.py)
ENDED_KEY = "_ended"  # true on a memory that has a `valid_until` (superseded or invalidated)
VALID_UNTIL_KEY = "_valid_until"  # `valid_until` as epoch seconds (shared/stores/vector/port.py)
CREATED_KEY = "_ts"  # the creation instant as epoch seconds
MAX_CONDITIONS = 64
MAX_DEPTH = 4
MAX_SET = 100
MAX_STRING = 2_000

Scalar = Union[str, bool, int, float]  # noqa: UP007 (a runtime alias)


@dataclass(frozen=True)
class Compare:
    key: str
    op: str  # one of OPERATORS
    value: Any  # a Scalar, or a tuple of them for in/nin


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class NoneOf:
    parts: tuple[Condition, ...]


Condition = Union[Compare, AllOf, AnyOf, NoneOf]  # noqa: UP007


class FilterError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def parse(raw: Mapping[str, Any], path: str = "filters.metadata", reserved: frozenset[str] = frozenset()) -> Condition:
    """The tree of a filter object; raises `FilterError` naming the first wrong place."""
    counter = [0]
    return _object(raw, path, reserved, 0, counter)


def _object(raw: Any, path: str, reserved: frozenset[str], depth: int, counter: list[int]) -> Condition:
    if not isinstance(raw, Mapping):
        raise FilterError(path, "a condition is an object")
    if not raw:
        raise FilterError(path, "an empty condition")
    parts: list[Condition] = []
    for key, value in raw.items():
        here = f"{path}.{key}"
        if key in LOGICAL:
            parts.append(_logical(key, value, here, reserved, depth, counter))
            continue
        if not isinstance(key, str) or not FILTER_KEY.fullmatch(key):
            raise FilterError(
                f"{path}.{str(key)[:80]}",
                "filter keys are letters, digits, '_' and '-' (not starting with '-'), or AND/OR/NOT",
            )
        if key in reserved:
            raise FilterError(here, f"'{key}' is not metadata and cannot be filtered on here")
        if isinstance(value, Mapping):
            if not value:
                raise FilterError(here, f"an operator object needs one of {', '.join(OPERATORS)}")
            parts.extend(_compare(key, str(op), operand, f"{here}.{op}", counter) for op, operand in value.items())
        else:
            parts.append(_compare(key, "eq", value, here, counter))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _logical(key: str, value: Any, path: str, reserved: frozenset[str], depth: int, counter: list[int]) -> Condition:
    if depth >= MAX_DEPTH:
        raise FilterError(path, f"AND/OR/NOT nest at most {MAX_DEPTH} deep")
    if not isinstance(value, list) or not value:
        raise FilterError(path, f"{key} takes a non-empty list of conditions")
    parts = tuple(_object(item, f"{path}[{i}]", reserved, depth + 1, counter) for i, item in enumerate(value))
    if key == "AND":
        return AllOf(parts)
    return AnyOf(parts) if key == "OR" else NoneOf(parts)


def _scalar(value: Any, path: str) -> Scalar:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(path, "numbers must be finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise FilterError(path, f"at most {MAX_STRING} characters")
        return value
    raise FilterError(path, "a value is a string, a number or a boolean")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(key: str, op: str, operand: Any, path: str, counter: list[int]) -> Compare:
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise FilterError(path, f"at most {MAX_CONDITIONS} conditions in one filter")
    if op not in OPERATORS:
        raise FilterError(path, f"unknown operator '{op[:40]}' (one of {', '.join(OPERATORS)})")
    if op in SET_OPS:
        if not isinstance(operand, list) or not operand or len(operand) > MAX_SET:
            raise FilterError(path, f"'{op}' takes a list of 1-{MAX_SET} values")
        return Compare(key, op, tuple(_scalar(v, f"{path}[{i}]") for i, v in enumerate(operand)))
    value = _scalar(operand, path)
    if op in RANGE_OPS and not _is_number(value):
        raise FilterError(path, f"'{op}' compares numbers")
    if op == "contains" and (not isinstance(value, str) or not words(value)):
        raise FilterError(path, "'contains' takes a string of at least one word")
    return Compare(key, op, value)


_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words `contains` compares: runs of letters and digits, lowercased."""
    return [word.lower() for word in _WORD.findall(text)]


def all_of(*conditions: Condition | None) -> Condition | None:
    """The conjunction of the given conditions (None ones left out), flattened one level."""
    parts: list[Condition] = []
    for condition in conditions:
        if condition is None:
            continue
        parts.extend(condition.parts if isinstance(condition, AllOf) else (condition,))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


# --- evaluation on a payload -----------------------------------------------------------------
def same(stored: Any, value: Any) -> bool:
    """Equality as every engine filter means it: a boolean only equals a boolean, 2 equals 2.0."""
    if isinstance(stored, bool) or isinstance(value, bool):
        return isinstance(stored, bool) and isinstance(value, bool) and stored == value
    if _is_number(value):
        return _is_number(stored) and stored == value
    return bool(stored == value)


def holds(condition: Condition | None, payload: Mapping[str, Any]) -> bool:
    if condition is None:
        return True
    if isinstance(condition, AllOf):
        return all(holds(part, payload) for part in condition.parts)
    if isinstance(condition, AnyOf):
        return any(holds(part, payload) for part in condition.parts)
    if isinstance(condition, NoneOf):
        return not any(holds(part, payload) for part in condition.parts)
    stored = payload.get(condition.key)
    op, value = condition.op, condition.value
    if op == "eq":
        return same(stored, value)
    if op == "ne":
        return not same(stored, value)
    if op == "in":
        return any(same(stored, v) for v in value)
    if op == "nin":
        return not any(same(stored, v) for v in value)
    if op == "contains":
        return isinstance(stored, str) and set(words(value)) <= set(words(stored))
    if not _is_number(stored):
        return False
    return bool(
        {"gt": stored > value, "gte": stored >= value, "lt": stored < value, "lte": stored <= value}[op],
    )


def keys(condition: Condition | None) -> set[str]:
    """Every key a condition names."""
    if condition is None:
        return set()
    if isinstance(condition, Compare):
        return {condition.key}
    return set().union(*(keys(part) for part in condition.parts))


def not_expired(now: float) -> Condition:
    """Memories whose `_expires` (epoch seconds) is after `now`, or that never expire (no `_mortal`).

    Said without NOT and without "the key is missing", which Chroma cannot say: `ne` holds for a
    memory without the key in every engine.
    """
    return AnyOf((Compare(MORTAL_KEY, "ne", True), Compare(EXPIRES_KEY, "gt", now)))


def valid_at(at: float) -> Condition:
    """Memories still true at `at`: no `valid_until` (no `_ended`), or one after `at`. Said like
    `not_expired`, without NOT or "the key is missing"."""
    return AnyOf((Compare(ENDED_KEY, "ne", True), Compare(VALID_UNTIL_KEY, "gt", at)))


@dataclass(frozen=True)
class Validity:
    """Which memories a read returns by their validity: those true now (the default), those true
    at an instant (`as_of`: also created by then), or all of them (`include_superseded`)."""

    mode: str = "current"  # "current", "as_of" or "all"
    at: float | None = None  # the instant of "as_of" (epoch seconds)

    @classmethod
    def current(cls) -> Validity:
        return cls()

    @classmethod
    def as_of(cls, at: float) -> Validity:
        return cls("as_of", float(at))

    @classmethod
    def everything(cls) -> Validity:
        return cls("all")

    @classmethod
    def of_request(cls, as_of: float | None, include_superseded: bool) -> Validity:
        """A request's `as_of` / `include_superseded` (which wins: everything, with its validity). The
        instant covers its whole millisecond, the precision of every instant the API shows: a memory's
        own `created_at` as `as_of` includes it."""
        if include_superseded:
            return cls.everything()
        return cls.current() if as_of is None else cls.as_of(math.floor(as_of * 1000) / 1000 + 0.000999)

    @property
    def is_current(self) -> bool:
        return self.mode == "current"

    def condition(self, now: float) -> Condition | None:
        if self.mode == "all":
            return None
        if self.mode == "as_of" and self.at is not None:
            return AllOf((valid_at(self.at), Compare(CREATED_KEY, "lte", self.at)))
        return valid_at(now)


# --- the grammar as JSON Schema (for the OpenAPI document) -------------------------------------
SCHEMA_PREFIX = "FilterCondition"


def json_schemas(reserved: frozenset[str], ref: str = "#/components/schemas/{model}") -> dict[str, dict[str, Any]]:
    """Named JSON schemas that accept exactly the filters `parse` accepts, but for the count of
    conditions (`MAX_CONDITIONS`) and words in `contains`: one schema per nesting level, since
    AND/OR/NOT nest at most `MAX_DEPTH` deep. The entry point is `FilterCondition`."""

    def named(name: str) -> dict[str, str]:
        return {"$ref": ref.format(model=f"{SCHEMA_PREFIX}{name}")}

    values = {"type": "array", "minItems": 1, "maxItems": MAX_SET, "items": named("Scalar")}
    schemas: dict[str, dict[str, Any]] = {
        f"{SCHEMA_PREFIX}Scalar": {
            "anyOf": [{"type": "string", "maxLength": MAX_STRING}, {"type": "number"}, {"type": "boolean"}]
        },
        f"{SCHEMA_PREFIX}Value": {
            "description": "A value (equality) or an object of operators that must all hold.",
            "anyOf": [
                named("Scalar"),
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "eq": named("Scalar"),
                        "ne": named("Scalar"),
                        **{op: {"type": "number"} for op in RANGE_OPS},
                        "in": values,
                        "nin": values,
                        "contains": {"type": "string", "maxLength": MAX_STRING, "pattern": "[0-9A-Za-z]"},
                    },
                },
            ],
        },
    }
    key = {"pattern": f"^{FILTER_KEY.pattern}$", "not": {"enum": sorted(reserved | set(LOGICAL))}}
    levels = [SCHEMA_PREFIX] + [f"{SCHEMA_PREFIX}{level}" for level in range(1, MAX_DEPTH + 1)]
    for depth, name in enumerate(levels):
        schema: dict[str, Any] = {"type": "object", "minProperties": 1, "additionalProperties": named("Value")}
        if depth < MAX_DEPTH:
            items = {"$ref": ref.format(model=levels[depth + 1])}
            schema["properties"] = {op: {"type": "array", "minItems": 1, "items": items} for op in LOGICAL}
            schema["propertyNames"] = {"anyOf": [{"enum": list(LOGICAL)}, key]}
        else:
            schema["propertyNames"] = key
            schema["description"] = f"AND/OR/NOT nest at most {MAX_DEPTH} deep."
        schemas[name] = schema
    return schemas
