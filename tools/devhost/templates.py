"""ASP.NET Core route templates as the Functions host parses and matches them, e.g. `api/items/{id:int}/{*rest}`:
literals, parameters with inline constraints, optional and default values, catch-alls, complex segments."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class RouteTemplateError(ValueError):
    """The template is not valid ASP.NET Core route syntax; the host puts the function in error."""


_INT_RE = re.compile(r"\s*[+-]?[0-9]+\s*")
_FLOAT_RE = re.compile(r"\s*[+-]?(?:[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_DECIMAL_RE = re.compile(r"\s*[+-]?(?:[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)\s*")
_FLOAT_WORDS = frozenset({"nan", "infinity", "+infinity", "-infinity", "∞", "+∞", "-∞"})
_GUID_D_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GUID_N_RE = re.compile(r"[0-9a-fA-F]{32}")
_ALPHA_RE = re.compile(r"[a-zA-Z]*")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
# Resolvable by ASP.NET Core's DefaultInlineConstraintResolver but not checked here.
_UNCHECKED_CONSTRAINTS = frozenset({"datetime", "file", "nonfile"})


def _is_int_in(value: str, bounds: tuple[int, int]) -> bool:
    return _INT_RE.fullmatch(value) is not None and bounds[0] <= int(value) <= bounds[1]


def _is_guid(value: str) -> bool:
    # Guid.TryParse formats N, D, B and P (X is too exotic for a URL).
    text = value.strip()
    if len(text) == 38 and (text[0], text[-1]) in {("{", "}"), ("(", ")")}:
        return _GUID_D_RE.fullmatch(text[1:-1]) is not None
    return _GUID_D_RE.fullmatch(text) is not None or _GUID_N_RE.fullmatch(text) is not None


def _is_float(value: str) -> bool:
    return _FLOAT_RE.fullmatch(value) is not None or value.strip().lower() in _FLOAT_WORDS


def _constraint_check(name: str, argument: str | None, where: str) -> Callable[[str], bool] | None:
    """The check for one inline constraint, or None when it is resolvable but not checked here."""
    args = [a.strip() for a in argument.split(",")] if argument is not None else []

    def numbers(count: int) -> list[int]:
        if len(args) != count or not all(_INT_RE.fullmatch(a) for a in args):
            raise RouteTemplateError(f"{where}: constraint '{name}' needs {count} integer argument(s)")
        return [int(a) for a in args]

    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _is_int_in(v, _INT32),
        "long": lambda v: _is_int_in(v, _INT64),
        "bool": lambda v: v.strip().lower() in ("true", "false"),
        "alpha": lambda v: _ALPHA_RE.fullmatch(v) is not None,
        "guid": _is_guid,
        "double": _is_float,
        "float": _is_float,
        "decimal": lambda v: _DECIMAL_RE.fullmatch(v) is not None,
        "required": lambda v: v != "",
    }
    if name in simple:
        if args:
            raise RouteTemplateError(f"{where}: constraint '{name}' takes no arguments")
        return simple[name]
    if name in ("min", "max"):
        (limit,) = numbers(1)
        if name == "min":
            return lambda v: _is_int_in(v, (limit, _INT64[1]))
        return lambda v: _is_int_in(v, (_INT64[0], limit))
    if name == "range":
        low, high = numbers(2)
        return lambda v: _is_int_in(v, (low, high))
    if name in ("minlength", "maxlength"):
        (limit,) = numbers(1)
        if name == "minlength":
            return lambda v: len(v) >= limit
        return lambda v: len(v) <= limit
    if name == "length":
        if len(args) == 1:
            (exact,) = numbers(1)
            return lambda v: len(v) == exact
        low, high = numbers(2)
        return lambda v: low <= len(v) <= high
    if name == "regex":
        if not argument:
            raise RouteTemplateError(f"{where}: constraint 'regex' needs a pattern")
        try:
            # RegexRouteConstraint: IgnoreCase | CultureInvariant, IsMatch (not anchored).
            pattern = re.compile(argument, re.IGNORECASE)
        except re.error:
            return None  # .NET-only syntax: cannot be checked with Python's re
        return lambda v: pattern.search(v) is not None
    if name in _UNCHECKED_CONSTRAINTS:
        return None
    # ASP.NET Core throws "The constraint reference '...' could not be resolved to a type" and the route
    # is never mapped, so a typo must not silently work here.
    raise RouteTemplateError(f"{where}: the constraint reference '{name}' could not be resolved to a type")


@dataclass(frozen=True)
class RouteConstraint:
    """One inline constraint, e.g. `int` or `min(1)`; `check` is None when it is not enforced here."""

    text: str
    name: str
    argument: str | None
    check: Callable[[str], bool] | None = field(compare=False, repr=False)

    @property
    def enforced(self) -> bool:
        return self.check is not None

    def accepts(self, value: str) -> bool:
        return self.check is None or self.check(value)


@dataclass(frozen=True)
class RouteParameter:
    name: str
    constraints: tuple[RouteConstraint, ...] = ()
    optional: bool = False
    catch_all: bool = False
    default: str | None = None

    @property
    def may_be_absent(self) -> bool:
        return self.optional or self.catch_all or self.default is not None

    def accepts(self, value: str) -> bool:
        return all(c.accepts(value) for c in self.constraints)


Part = str | RouteParameter


def _build_complex_patterns(parts: Sequence[Part]) -> tuple[tuple[re.Pattern[str], ...], tuple[RouteParameter, ...]]:
    """Regexes for a segment mixing literals and parameters, tried in order, and its parameters.

    ASP.NET matches such segments right to left, taking each literal at its last occurrence; greedy groups
    give the same split ("{a}.{b}" on "x.y.z" -> a="x.y", b="z"). An optional last parameter goes away
    together with the '.' in front of it ("{name}.{ext?}" also matches "file"), and is tried present first.
    """
    params = tuple(p for p in parts if isinstance(p, RouteParameter))
    last = parts[-1]
    optional_tail = isinstance(last, RouteParameter) and last.optional
    body = parts[:-1] if optional_tail else parts
    pattern = ""
    group = 0
    for part in body:
        if isinstance(part, str):
            pattern += re.escape(part)
        else:
            pattern += f"(?P<p{group}>.+)"
            group += 1
    flags = re.IGNORECASE | re.DOTALL
    if not optional_tail:
        return (re.compile(pattern, flags),), params
    assert pattern.endswith(r"\.")
    with_tail = pattern + f"(?P<p{len(params) - 1}>.+)"
    return (re.compile(with_tail, flags), re.compile(pattern[: -len(r"\.")], flags)), params


@dataclass(frozen=True)
class RouteSegment:
    parts: tuple[Part, ...]
    patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)
    pattern_params: tuple[RouteParameter, ...] = field(default=(), compare=False, repr=False)

    @property
    def literal(self) -> str | None:
        if len(self.parts) == 1 and isinstance(self.parts[0], str):
            return self.parts[0]
        return None

    @property
    def parameter(self) -> RouteParameter | None:
        if len(self.parts) == 1 and isinstance(self.parts[0], RouteParameter):
            return self.parts[0]
        return None

    @property
    def may_be_absent(self) -> bool:
        param = self.parameter
        return param is not None and param.may_be_absent

    @property
    def precedence_digit(self) -> int:
        # RoutePrecedence.ComputeInbound: 1 literal, 2 complex or constrained parameter, 3 parameter,
        # 4 constrained catch-all, 5 catch-all. Lower digits are tried first.
        if self.literal is not None:
            return 1
        param = self.parameter
        if param is None:
            return 2
        digit = 5 if param.catch_all else 3
        return digit - 1 if param.constraints else digit

    def capture(self, value: str) -> dict[str, str] | None:
        """The route values this one (non catch-all) segment takes from `value`, or None if no match."""
        literal = self.literal
        if literal is not None:
            return {} if literal.upper() == value.upper() else None
        param = self.parameter
        if param is not None:
            return {param.name: value} if param.accepts(value) else None
        for pattern in self.patterns:
            found = pattern.fullmatch(value)
            if found is None:
                continue
            groups = found.groupdict()
            values = {p.name: groups[f"p{i}"] for i, p in enumerate(self.pattern_params) if f"p{i}" in groups}
            if all(p.accepts(values[p.name]) for p in self.pattern_params if p.name in values):
                return values
        return None


def _split_parameter(body: str, where: str) -> RouteParameter:
    text = body
    catch_all = False
    if text.startswith("**"):
        catch_all, text = True, text[2:]
    elif text.startswith("*"):
        catch_all, text = True, text[1:]
    pieces: list[str] = []
    current: list[str] = []
    default: str | None = None
    depth = 0
    for index, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0 and ch == "=":
            default = text[index + 1 :]
            break
        elif depth == 0 and ch == ":":
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    pieces.append("".join(current))
    optional = False
    if default is not None:
        if default.endswith("?"):
            raise RouteTemplateError(f"{where}: an optional parameter cannot have a default value")
    elif pieces[-1].endswith("?"):
        optional = True
        pieces[-1] = pieces[-1][:-1]
    name = pieces[0]
    if not name or any(c in name for c in "{}/?*"):
        raise RouteTemplateError(
            f"{where}: the route parameter name '{name}' is invalid (it must be non-empty and cannot contain "
            "'{', '}', '/'; '?' may only end it and '*' only start it)"
        )
    if catch_all and optional:
        raise RouteTemplateError(f"{where}: a catch-all parameter cannot be marked optional")
    constraints = []
    for text_ in pieces[1:]:
        found = re.fullmatch(r"([^()]*)(?:\((.*)\))?", text_, re.DOTALL)
        if found is None or not found.group(1).strip():
            raise RouteTemplateError(f"{where}: the inline constraint '{text_}' of '{name}' is invalid")
        cname = found.group(1).strip().lower()
        argument = found.group(2)
        constraints.append(RouteConstraint(text_, cname, argument, _constraint_check(cname, argument, where)))
    return RouteParameter(name, tuple(constraints), optional, catch_all, default)


def _scan_segments(text: str, where: str) -> list[list[Part]]:
    segments: list[list[Part]] = [[]]
    literal: list[str] = []

    def flush() -> None:
        if literal:
            segments[-1].append("".join(literal))
            literal.clear()

    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/":
            flush()
            if not segments[-1]:
                raise RouteTemplateError(f"{where}: the separator '/' cannot appear consecutively")
            segments.append([])
            i += 1
        elif ch == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif ch == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif ch == "}":
            raise RouteTemplateError(f"{where}: unmatched '}}'")
        elif ch == "{":
            j, body = i + 1, []
            while True:
                if j >= n:
                    raise RouteTemplateError(f"{where}: unclosed '{{'")
                c = text[j]
                if c in "{}" and text.startswith(c * 2, j):
                    body.append(c)
                    j += 2
                elif c == "}":
                    break
                elif c == "{":
                    raise RouteTemplateError(f"{where}: unescaped '{{' inside a parameter")
                else:
                    body.append(c)
                    j += 1
            flush()
            segments[-1].append(_split_parameter("".join(body), where))
            i = j + 1
        else:
            literal.append(ch)
            i += 1
    flush()
    if not segments[-1]:
        segments.pop()  # a trailing '/' (or an empty template)
    return segments


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed ASP.NET Core route template, e.g. `api/items/{id:int}/{*rest}`."""

    text: str
    segments: tuple[RouteSegment, ...]

    @property
    def parameters(self) -> list[RouteParameter]:
        return [p for s in self.segments for p in s.parts if isinstance(p, RouteParameter)]

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(s.precedence_digit for s in self.segments)

    @property
    def min_segments(self) -> int:
        required = [i for i, s in enumerate(self.segments) if not s.may_be_absent]
        return required[-1] + 1 if required else 0

    @property
    def max_segments(self) -> int | None:
        if self.segments and (param := self.segments[-1].parameter) is not None and param.catch_all:
            return None
        return len(self.segments)

    def unchecked_constraints(self) -> list[tuple[str, str]]:
        return [(p.name, c.text) for p in self.parameters for c in p.constraints if not c.enforced]

    def match(self, path: str) -> dict[str, str] | None:
        """Route values when the decoded request path (no leading '/') matches, else None."""
        pieces = path.split("/") if path else []
        # ASP.NET Core ignores one trailing slash, except that a catch-all keeps it.
        trimmed = pieces[:-1] if len(pieces) > 1 and pieces[-1] == "" else pieces
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            param = segment.parameter
            if param is not None and param.catch_all:
                rest = "/".join(pieces[index:])
                if rest:
                    if not param.accepts(rest):
                        return None
                    values[param.name] = rest
                elif param.default is not None:
                    values[param.name] = param.default
                return values
            if index >= len(trimmed):
                if param is None or not param.may_be_absent:
                    return None
                if param.default is not None:
                    values[param.name] = param.default
                continue
            value = trimmed[index]
            if not value:
                return None
            captured = segment.capture(value)
            if captured is None:
                return None
            values.update(captured)
        if len(trimmed) > len(self.segments):
            return None
        return values


def parse_route_template(template: str) -> RouteTemplate:
    """Parse an ASP.NET Core route template; raise RouteTemplateError where ASP.NET Core would throw."""
    where = f"route template '{template}'"
    text = template
    if text.startswith("~/"):
        text = text[2:]
    elif text.startswith("/"):
        text = text[1:]
    if text.startswith("~"):
        raise RouteTemplateError(f"{where}: it cannot start with '~' unless followed by '/'")
    raw_segments = _scan_segments(text, where)
    segments: list[RouteSegment] = []
    seen: set[str] = set()
    for index, parts in enumerate(raw_segments):
        params = [p for p in parts if isinstance(p, RouteParameter)]
        for p in params:
            if p.name.upper() in seen:
                raise RouteTemplateError(f"{where}: the parameter name '{p.name}' appears more than once")
            seen.add(p.name.upper())
            if p.catch_all and (index != len(raw_segments) - 1 or len(parts) > 1):
                raise RouteTemplateError(f"{where}: a catch-all parameter can only be a whole last segment")
        if len(parts) == 1:
            segments.append(RouteSegment(tuple(parts)))
            continue
        for left, right in itertools.pairwise(parts):
            if isinstance(left, RouteParameter) and isinstance(right, RouteParameter):
                raise RouteTemplateError(f"{where}: a segment cannot contain two consecutive parameters")
        for position, part in enumerate(parts):
            if isinstance(part, RouteParameter) and part.optional:
                before = parts[position - 1] if position else None
                if position != len(parts) - 1 or not (isinstance(before, str) and before.endswith(".")):
                    raise RouteTemplateError(
                        f"{where}: in a segment with several parts an optional parameter must come last, "
                        "right after a '.'"
                    )
        patterns, pattern_params = _build_complex_patterns(parts)
        segments.append(RouteSegment(tuple(parts), patterns, pattern_params))
    return RouteTemplate(template, tuple(segments))
