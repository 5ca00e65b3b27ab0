"""A local stand-in for Azure Functions Core Tools (`func start`) that serves HTTP functions.

Core Tools cannot be installed here (its installer downloads a binary), so local runs and end-to-end
tests use this instead. It is not a second implementation of the API: it knows no route by name.
It indexes the real `FunctionApp` (`app.get_functions()`, like the worker's indexing), reads
`extensions.http.routePrefix` from host.json, routes requests with the Functions host's rules and
calls the user functions the way the Python worker does, then serves them on uvicorn.

    python -m tools.devhost --host 127.0.0.1 --port 7071 [--app function_app:app] [--host-json host.json]

Where the real stack behaves in a surprising way the dev host copies it, so tests catch it locally.
The sources are cited next to each rule; "host" is Azure/azure-functions-host, "worker" is
Azure/azure-functions-python-worker, "extensions" is Azure/azure-webjobs-sdk-extensions:

- A request whose path matches but whose method does not gets 404 with an empty body, not 405: the
  method is a route constraint (HttpMethodRouteConstraint in host
  src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs), see host issue #10098. HEAD is not
  derived from GET either (host issue #11625).
- An empty route means the function name, as a missing route does (same file, and
  ScriptHost.ValidateHttpFunction): a function cannot be served at the bare prefix/root.
- Query values and header values that repeat are joined with "," and empty query values are dropped
  (StringValues.ToString() in host src/WebJobs.Script.Grpc/MessageExtensions/
  GrpcMessageConversionExtensions.cs, ToRpcHttp).
- A function may return only `func.HttpResponse` or `str` (the library's HttpResponseConverter,
  which the worker calls); anything else fails the invocation (500).

One rule deliberately differs: by default overlapping routes are tried in ASP.NET Core precedence
order (literal before parameter, constrained before unconstrained, catch-all last), while the host
tries them in function-name order and takes the first match (host FunctionMetadataManager sorts by
name; extensions WebJobsRouteBuilder.Build keeps that order; host issues #9876 and #3153, extensions
PR #842 still open). `--route-order host` copies the host, and every overlapping pair the two orders
resolve differently is logged at start.

Core Tools also loads local.settings.json into the environment; here that takes `--local-settings`,
so that test hosts started with a clean environment stay clean.

Function keys are not checked by default (like Core Tools). `--enforce-keys` (or DEVHOST_ENFORCE_KEYS=true)
checks them as the host does in Azure: a key in the `x-functions-key` header, else in the `code` query
parameter; `anonymous` needs none, `function` takes a host key, that function's key or the master key,
`admin` only the master key; a missing or wrong key is an empty 401 before the function runs. Keys come
from `--keys-file`, the DEVHOST_KEYS setting (inline JSON) or DEVHOST_KEYS_FILE, in the shape
`az functionapp keys list` prints plus per-function keys (FunctionKeys); with none, keys are generated
and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import inspect
import itertools
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, unquote_to_bytes

from functions.hostjson import DEFAULT_ROUTE_PREFIX, read_route_prefix
from tools.devhost_bindings import binding_problems
from tools.devhost_tracing import RequestTrace, request_span

if TYPE_CHECKING:
    import azure.functions as func

log = logging.getLogger("devhost")

RouteOrder = Literal["precedence", "host"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# host ScriptHost.ValidateHttpFunction rejects routes that merely start with these (so "administer" too).
RESERVED_ROUTE_STARTS = ("admin", "runtime")


# --- route templates ------------------------------------------------------------------------------


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


# --- function indexing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpFunction:
    """What the dev host needs of one HTTP-triggered function of the app."""

    name: str
    route: str
    methods: frozenset[str] | None
    auth_level: str
    trigger_arg: str
    user_function: Callable[..., Any] = field(repr=False)
    is_async: bool = False
    takes_context: bool = False
    output_bindings: tuple[str, ...] = ()
    declared_route: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def fresh_functions(app: func.FunctionApp) -> list[func.Function]:
    """`app.get_functions()`, indexed afresh."""
    # get_functions() keeps the names it saw in `functions_bindings` and reports them all as duplicates on
    # a second call; the worker indexes once per process, so a fresh index here is the faithful one.
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = None
    return list(app.get_functions())


def index_functions(app: func.FunctionApp) -> tuple[list[HttpFunction], list[tuple[str, str]]]:
    """The app's HTTP functions, and (name, trigger type) of the others, which the dev host does not run.

    `get_functions()` validates the app like the worker's indexing (unique names, one trigger each).
    """
    from azure.functions.decorators.http import HttpTrigger

    http: list[HttpFunction] = []
    others: list[tuple[str, str]] = []
    for fn in fresh_functions(app):
        user_function = fn.get_user_function()
        name = fn.get_function_name() or user_function.__name__
        trigger = fn.get_trigger()
        if not isinstance(trigger, HttpTrigger):
            others.append((name, trigger.get_binding_name() if trigger is not None else "no trigger"))
            continue
        declared = trigger.route
        warnings: list[str] = []
        if declared is None or not declared.strip():
            if declared is not None:
                warnings.append(
                    f"its route is empty, which the Functions host maps to the function name '{name}', not to the "
                    "bare prefix (Azure/Azure-Functions#2473); a route of '{ignored:maxlength(0)?}' serves the bare "
                    "prefix"
                )
            route = name
        else:
            route = declared
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in trigger.methods) if trigger.methods else None
        auth = trigger.auth_level
        trigger_arg = trigger.name
        takes_context, outputs, error, binding_warnings = binding_problems(fn, trigger_arg)
        http.append(
            HttpFunction(
                name=name,
                route=route,
                methods=methods,
                auth_level=str(getattr(auth, "value", auth) or "function").lower(),
                trigger_arg=trigger_arg,
                user_function=user_function,
                is_async=inspect.iscoroutinefunction(user_function),
                takes_context=takes_context,
                output_bindings=outputs,
                declared_route=declared,
                error=error,
                warnings=(*warnings, *binding_warnings),
            )
        )
    return http, others


# --- routing --------------------------------------------------------------------------------------


def _host_order_key(name: str) -> str:
    # FunctionMetadataManager orders with StringComparer.OrdinalIgnoreCase, which upper-cases: '_' sorts
    # after letters, unlike with lower().
    return name.upper()


@dataclass(frozen=True)
class Route:
    function: HttpFunction
    template: RouteTemplate
    host_rank: int

    def allows(self, method: str) -> bool:
        return self.function.methods is None or method.upper() in self.function.methods

    @property
    def methods_label(self) -> str:
        return ",".join(sorted(self.function.methods)) if self.function.methods else "all"


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    params: dict[str, str]


_OVERLAP_SAMPLES = ("1", "0", "-1", "abc", "true", "00000000-0000-0000-0000-000000000000", "1.5", "a1", "a.b", "x" * 40)


def _segments_may_overlap(a: RouteSegment | None, b: RouteSegment | None) -> bool:
    # A heuristic for start-up warnings only: None stands for "inside a catch-all", which takes anything.
    if a is None or b is None:
        return True
    if a.literal is not None and b.literal is not None:
        return a.literal.upper() == b.literal.upper()
    if a.literal is not None:
        return b.capture(a.literal) is not None
    if b.literal is not None:
        return a.capture(b.literal) is not None
    pa, pb = a.parameter, b.parameter
    if pa is None or pb is None:
        return True
    return any(pa.accepts(s) and pb.accepts(s) for s in _OVERLAP_SAMPLES)


def _templates_may_overlap(a: RouteTemplate, b: RouteTemplate) -> bool:
    low = max(a.min_segments, b.min_segments)
    highs = [m for m in (a.max_segments, b.max_segments) if m is not None]
    if highs and low > min(highs):
        return False

    def at(t: RouteTemplate, index: int) -> RouteSegment | None:
        if index < len(t.segments) and not ((p := t.segments[index].parameter) is not None and p.catch_all):
            return t.segments[index]
        return None

    # The shortest path both accept is the most permissive one to test: longer paths only add segments.
    return all(_segments_may_overlap(at(a, i), at(b, i)) for i in range(low))


class Router:
    """The route table of the host for a set of HTTP functions and a route prefix."""

    def __init__(
        self, functions: Iterable[HttpFunction], route_prefix: str, route_order: RouteOrder = "precedence"
    ) -> None:
        self.route_prefix = route_prefix.strip("/")
        self.route_order: RouteOrder = route_order
        self.errors: dict[str, str] = {}
        self.warnings: list[str] = []
        accepted: list[Route] = []
        for rank, fn in enumerate(sorted(functions, key=lambda f: _host_order_key(f.name))):
            for warning in fn.warnings:
                self.warnings.append(f"function '{fn.name}': {warning}")
            error = fn.error or self._host_validation_error(fn, accepted)
            template: RouteTemplate | None = None
            if error is None:
                full = f"{self.route_prefix}/{fn.route}" if self.route_prefix else fn.route
                try:
                    template = parse_route_template(full)
                except RouteTemplateError as exc:
                    error = str(exc)
            if error is not None or template is None:
                self.errors[fn.name] = error or "invalid route"
                continue
            for param, constraint in template.unchecked_constraints():
                self.warnings.append(
                    f"function '{fn.name}': constraint '{constraint}' of '{param}' is accepted but not checked"
                )
            accepted.append(Route(fn, template, rank))
        self.by_name: list[Route] = accepted
        if route_order == "host":
            self.routes = list(accepted)
        else:
            # Equal digit tuples imply equal segment counts, so "more segments first" never decides here;
            # the host's own order breaks the remaining ties.
            self.routes = sorted(accepted, key=lambda r: (r.template.precedence, r.host_rank))
        self.warnings.extend(self._order_disagreements())

    @staticmethod
    def _host_validation_error(fn: HttpFunction, accepted: Sequence[Route]) -> str | None:
        # host ScriptHost.ValidateHttpFunction / HttpRoutesConflict, applied in function-name order.
        plain = fn.route.strip("/").lower()
        if plain.startswith(RESERVED_ROUTE_STARTS):
            return "the specified route conflicts with one or more built in routes (it starts with admin/runtime)"
        for other in accepted:
            if other.function.route.strip("/").lower() != plain:
                continue
            mine, theirs = fn.methods, other.function.methods
            if mine is None or theirs is None or mine & theirs:
                return f"the route specified conflicts with the route defined by function '{other.function.name}'"
        return None

    def _order_disagreements(self) -> list[str]:
        warnings: list[str] = []
        by_precedence = sorted(self.by_name, key=lambda r: (r.template.precedence, r.host_rank))
        position = {id(r): i for i, r in enumerate(by_precedence)}
        for i, first in enumerate(self.by_name):
            for second in self.by_name[i + 1 :]:
                # `first` wins in the host (earlier name); it is a disagreement when precedence prefers `second`.
                if position[id(second)] > position[id(first)]:
                    continue
                mine, theirs = first.function.methods, second.function.methods
                if mine is not None and theirs is not None and not mine & theirs:
                    continue
                if not _templates_may_overlap(first.template, second.template):
                    continue
                chosen = first if self.route_order == "host" else second
                warnings.append(
                    f"routes '{first.template.text}' ({first.function.name}) and '{second.template.text}' "
                    f"({second.function.name}) overlap: the Functions host sends requests matching both to "
                    f"'{first.function.name}' (first by function name), ASP.NET Core precedence to "
                    f"'{second.function.name}'; this dev host ({self.route_order} order) uses "
                    f"'{chosen.function.name}'. Rename a function or add a constraint so both agree."
                )
        return warnings

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The first route that matches the decoded path (no leading '/') and allows the method."""
        for route in self.routes:
            if not route.allows(method):
                continue  # the method is a route constraint: try the next route, as the host does
            params = route.template.match(path)
            if params is not None:
                return RouteMatch(route, params)
        return None


# --- host.json ------------------------------------------------------------------------------------


def load_local_settings(path: str | os.PathLike[str]) -> list[str]:
    """Put the `Values` of a local.settings.json into os.environ as Core Tools does: a variable that is
    already set and non-empty wins (and is reported). Returns the names that were set."""
    data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    values = data.get("Values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        return []
    loaded: list[str] = []
    for key, value in values.items():
        if os.environ.get(key):
            log.warning(
                "Skipping '%s' from local settings as it's already defined in current environment variables.", key
            )
            continue
        os.environ[key] = "" if value is None else str(value)
        loaded.append(key)
    return loaded


# --- request and response conversion --------------------------------------------------------------

_ENCODED_SLASH = re.compile(r"%2[fF]")


def _unquote_utf8(text: str) -> str:
    try:
        # Raw request paths reach here decoded as latin-1, so their bytes come back unchanged.
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return text  # Kestrel leaves sequences that are not UTF-8 encoded as they came


def decode_request_path(raw_path: str) -> str:
    """Percent-decode a request path the way Kestrel does: everything except %2F, which stays encoded
    so that it cannot split a segment."""
    pieces = _ENCODED_SLASH.split(raw_path)
    slashes = _ENCODED_SLASH.findall(raw_path)
    out = [_unquote_utf8(pieces[0])]
    for slash, piece in zip(slashes, pieces[1:], strict=True):
        out.extend((slash, _unquote_utf8(piece)))
    return "".join(out)


def _joined(pairs: Iterable[tuple[str, str]], *, lower_keys: bool) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}
    for key, value in pairs:
        folded = key.upper()
        name = spelled.setdefault(folded, key.lower() if lower_keys else key)
        grouped.setdefault(name, []).append(value)
    return grouped


def request_headers(scope: Scope) -> dict[str, str]:
    """Headers as the host sends them to the worker: lower-case names, repeated values joined with ','."""
    pairs = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", []))
    return {k: ",".join(v) for k, v in _joined(pairs, lower_keys=True).items()}


def request_query(query_string: bytes) -> dict[str, str]:
    """Query parameters as the host sends them: case-insensitive keys, repeated values joined with ',',
    empty values dropped."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    joined = {k: ",".join(v) for k, v in _joined(pairs, lower_keys=False).items()}
    return {k: v for k, v in joined.items() if v}


def _request_url(scope: Scope, headers: Mapping[str, str], raw_path: str) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{raw_path}{'?' + query if query else ''}"


def build_http_request(
    scope: Scope, body: bytes, route_params: Mapping[str, str], raw_path: str | None = None
) -> func.HttpRequest:
    """The `HttpRequest` the worker would build for this ASGI request."""
    from azure.functions.http import HttpRequest

    headers = request_headers(scope)
    path = raw_path if raw_path is not None else _raw_path(scope)
    # The worker builds this subclass; body_type "bytes" because it asks the host for raw body bytes.
    return HttpRequest(
        method=str(scope["method"]),
        url=_request_url(scope, headers, path),
        headers=headers,
        params=request_query(scope.get("query_string", b"")),
        route_params=dict(route_params),
        body_type="bytes",
        body=body,
    )


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).split(b"?", 1)[0].decode("latin-1")
    from urllib.parse import quote

    return quote(str(scope.get("path", "/")), safe="/%:@!$&'()*+,;=")


ResponseParts = tuple[int, list[tuple[bytes, bytes]], bytes]


def to_asgi_response(result: object) -> ResponseParts:
    """(status, headers, body) of a function's return value, through the library converter the worker uses.

    Like the worker, only `HttpResponse` and `str` are accepted; anything else raises TypeError. Header
    values must be ASCII (Kestrel refuses others). Only Set-Cookie keeps repeated values: the worker sends
    headers as a map and cookies separately.
    """
    from azure.functions.http import HttpResponseConverter

    try:
        datum = HttpResponseConverter.encode(result, expected_type=None)
    except NotImplementedError:
        raise TypeError(
            f'unable to encode outgoing TypedData: unsupported type "http" for Python type "{type(result).__name__}"'
        ) from None
    if datum.type == "string":
        return 200, [(b"content-type", b"text/plain; charset=utf-8")], str(datum.value).encode("utf-8")
    value = datum.value
    status_text = value["status_code"].value
    status = int(status_text) if status_text else 200
    headers: list[tuple[bytes, bytes]] = []
    for name, item in value["headers"].items():
        if name.lower() in ("content-length", "transfer-encoding"):
            continue  # framing is the server's business
        headers.append((name.encode("ascii"), str(item.value).encode("ascii")))
    for cookie in value.get("cookies") or ():
        for morsel in cookie.values():
            headers.append((b"set-cookie", morsel.OutputString().encode("ascii")))
    body = value["body"].value or b""
    return status, headers, bytes(body)


class _DiscardedOut:
    """Stands in for an output binding; the worker passes a plain object with set/get too."""

    def __init__(self) -> None:
        self._value: object = None

    def set(self, val: object) -> None:
        self._value = val

    def get(self) -> object:
        return self._value


@dataclass(frozen=True)
class _TraceContext:
    trace_parent: str
    trace_state: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class _RetryContext:
    retry_count: int = 0
    max_retry_count: int = 0
    exception: object = None


_invocation_tls = threading.local()


@dataclass(frozen=True)
class DevContext:
    """The `context` argument, with the attributes of the worker's Context."""

    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: _TraceContext
    retry_context: _RetryContext = field(default_factory=_RetryContext)

    @property
    def thread_local_storage(self) -> threading.local:
        return _invocation_tls


def _trace_context(headers: Mapping[str, str]) -> _TraceContext:
    parent = headers.get("traceparent") or f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    return _TraceContext(parent, headers.get("tracestate", ""), {})


# --- function keys --------------------------------------------------------------------------------

# Where the host reads the key of a request: the header first, then the `code` query parameter
# (host src/WebJobs.Script.WebHost/Security/Authentication/AuthenticationLevelHandler.cs).
FUNCTIONS_KEY_HEADER = "x-functions-key"
FUNCTIONS_KEY_QUERY = "code"
KEYS_ENV = "DEVHOST_KEYS"
KEYS_FILE_ENV = "DEVHOST_KEYS_FILE"
ENFORCE_KEYS_ENV = "DEVHOST_ENFORCE_KEYS"


class KeysError(ValueError):
    """The keys given to the dev host are not of the shape it reads."""


@dataclass(frozen=True)
class FunctionKeys:
    """The keys the host checks, in the shape `az functionapp keys list` prints, plus per-function keys.

    `{"masterKey": "...", "functionKeys": {"default": "..."}, "functions": {"<function>": {"default": "..."}}}`:
    the master key opens every level, a host key (`functionKeys`) every function-level function, a
    function's own key only that function. Admin-level functions take the master key alone.
    """

    master: str
    host: Mapping[str, str] = field(default_factory=dict)
    functions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def generated(cls) -> FunctionKeys:
        import secrets

        return cls(secrets.token_urlsafe(40), {"default": secrets.token_urlsafe(40)})

    @classmethod
    def from_json(cls, data: object, where: str) -> FunctionKeys:
        if not isinstance(data, dict):
            raise KeysError(f"{where}: the keys must be a JSON object")
        master = data.get("masterKey")
        if not isinstance(master, str) or not master:
            raise KeysError(f"{where}: 'masterKey' must be a non-empty string")
        host = data.get("functionKeys", {})
        functions = data.get("functions", {})
        if not _is_key_map(host):
            raise KeysError(f"{where}: 'functionKeys' must map key names to non-empty strings")
        if not isinstance(functions, dict) or not all(
            isinstance(k, str) and _is_key_map(v) for k, v in functions.items()
        ):
            raise KeysError(f"{where}: 'functions' must map function names to {{key name: key}} objects")
        return cls(master, dict(host), {name.lower(): dict(keys) for name, keys in functions.items()})

    def grants(self, function_name: str, auth_level: str, key: str | None) -> bool:
        """Whether `key` may call a function of this name and auth level (anonymous needs none)."""
        if auth_level == "anonymous":
            return True
        if not key:
            return False
        if _same(key, self.master):
            return True
        if auth_level == "admin":
            return False
        own = self.functions.get(function_name.lower(), {})
        return any(_same(key, value) for value in (*self.host.values(), *own.values()))

    def to_json(self) -> dict[str, object]:
        return {"masterKey": self.master, "functionKeys": dict(self.host), "functions": dict(self.functions)}


def _is_key_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items())


def _same(given: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode(), expected.encode())


def load_function_keys(path: str | os.PathLike[str] | None = None) -> FunctionKeys | None:
    """Keys from `path`, else from the DEVHOST_KEYS setting (inline JSON), else DEVHOST_KEYS_FILE; None if none."""
    inline = os.environ.get(KEYS_ENV, "")
    file = path or os.environ.get(KEYS_FILE_ENV, "")
    if file:
        where = str(file)
        try:
            data = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeysError(f"{where}: cannot read the keys: {exc}") from None
        return FunctionKeys.from_json(data, where)
    if inline.strip():
        try:
            data = json.loads(inline)
        except ValueError as exc:
            raise KeysError(f"{KEYS_ENV}: not JSON: {exc}") from None
        return FunctionKeys.from_json(data, KEYS_ENV)
    return None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def request_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries: `x-functions-key`, else `?code=` (query names are case-insensitive there)."""
    header = headers.get(FUNCTIONS_KEY_HEADER)
    if header:
        return header
    for name, value in query.items():
        if name.lower() == FUNCTIONS_KEY_QUERY and value:
            return value
    return None


# --- the ASGI application -------------------------------------------------------------------------

# The host answers an unhandled exception with an empty 500; a fixed small JSON body reads better in test
# failures and, like the host's, says nothing about the exception itself.
_INTERNAL_ERROR_BODY = json.dumps(
    {"error": "internal_server_error", "message": "The function failed with an unhandled exception (see the log)."}
).encode()


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            return None


async def _send_response(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if status < 200 or status in (204, 304):
        body = b""
    else:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _default_max_workers() -> int | None:
    # The worker sizes its sync thread pool from PYTHON_THREADPOOL_THREAD_COUNT, else leaves it to
    # ThreadPoolExecutor (min(32, cpus + 4)) on Python >= 3.9.
    value = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count >= 1 else None


class DevHostApp:
    """The ASGI application: routes requests to the user functions like the Functions host."""

    def __init__(
        self,
        router: Router,
        *,
        non_http_functions: Sequence[tuple[str, str]] = (),
        max_workers: int | None = None,
        function_directory: str | None = None,
        runners: Sequence[Any] = (),
        keys: FunctionKeys | None = None,
    ) -> None:
        self.router = router
        # None: keys are not checked (Core Tools locally); else every non-anonymous function needs one.
        self.keys = keys
        self.non_http_functions = list(non_http_functions)
        # Listeners of other triggers (tools/devhost_queues.py): started and stopped with the server.
        self.runners = list(runners)
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers if max_workers is not None else _default_max_workers(),
            thread_name_prefix="devhost-worker",
        )
        self._function_directory = function_directory or os.getcwd()
        self._warned_unframed_body = False
        # What the host's extensions add (tools/devhost_mcp.py, tools/devhost_timers.py): a webhook served at
        # `webhook_path`, and/or background work started and stopped with the host.
        self.extensions: list[Any] = []

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for extension in self.extensions:
                    if hasattr(extension, "start"):
                        await extension.start()
                for runner in self.runners:
                    runner.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for runner in self.runners:
                    await asyncio.get_running_loop().run_in_executor(None, runner.stop)
                for extension in self.extensions:
                    if hasattr(extension, "stop"):
                        await extension.stop()
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope["method"]).upper()
        raw_path = _raw_path(scope)
        path = decode_request_path(raw_path)
        for extension in self.extensions:
            if getattr(extension, "webhook_path", None) and path.lower() == extension.webhook_path:
                await extension(scope, receive, send)
                return
        found = self.router.match(method, path[1:] if path.startswith("/") else path)
        if found is None:
            log.debug("no function matches %s %s", method, raw_path)
            await _send_response(send, 404, [], b"")
            return
        fn = found.route.function
        if self.keys is not None and not self.keys.grants(
            fn.name, fn.auth_level, request_key(request_headers(scope), request_query(scope.get("query_string", b"")))
        ):
            # The host answers a missing or wrong key with an empty 401 before the function runs.
            log.info("Unauthorized: '%s' is %s level and the request has no key that opens it", fn.name, fn.auth_level)
            await _send_response(send, 401, [], b"")
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        if (
            body
            and not self._warned_unframed_body
            and not any(k.lower() == b"content-length" for k, _ in scope.get("headers", []))
        ):
            self._warned_unframed_body = True
            log.warning(
                "a request body arrived without Content-Length (chunked); the Functions host forwards a body only "
                "when Content-Length > 0 (GrpcMessageConversionExtensions.ToRpcHttp), so it may arrive empty in Azure"
            )
        request = build_http_request(scope, body, found.params, raw_path)
        invocation_id = str(uuid.uuid4())
        log.info(
            "Executing 'Functions.%s' (Reason='This function was programmatically called via the host APIs.', Id=%s)",
            fn.name,
            invocation_id,
        )
        started = time.perf_counter()
        with request_span(fn.name, method, request.url, path, request.headers) as trace:
            try:
                result = await self._invoke(fn, request, invocation_id, trace)
                status, headers, payload = to_asgi_response(result)
            except asyncio.CancelledError:
                raise
            except BaseException:  # a failing function, even one raising SystemExit, must not take the host down
                log.exception(
                    "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                    fn.name,
                    invocation_id,
                    (time.perf_counter() - started) * 1000,
                )
                trace.finish(500)
                await _send_response(send, 500, [(b"content-type", b"application/json")], _INTERNAL_ERROR_BODY)
                return
            trace.finish(status, {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers})
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            fn.name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        await _send_response(send, status, headers, payload)

    async def _invoke(
        self, fn: HttpFunction, request: func.HttpRequest, invocation_id: str, trace: RequestTrace | None = None
    ) -> object:
        kwargs: dict[str, object] = {fn.trigger_arg: request}
        if fn.takes_context:
            trace_context = (
                _TraceContext(trace.trace_parent, trace.trace_state, {}) if trace else _trace_context(request.headers)
            )
            kwargs["context"] = DevContext(invocation_id, fn.name, self._function_directory, trace_context)
        for name in fn.output_bindings:
            kwargs[name] = _DiscardedOut()
        if fn.is_async:
            # The worker awaits async functions on its event loop, not in the thread pool.
            _invocation_tls.invocation_id = invocation_id
            result: object = await fn.user_function(**kwargs)
            return result
        call = functools.partial(_call_in_worker_thread, fn.user_function, kwargs, invocation_id)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def call_function(
        self,
        name: str,
        user_function: Callable[..., Any],
        kwargs: dict[str, Any],
        is_async: bool,
        reason: str = "This function was programmatically called via the host APIs.",
    ) -> object:
        """Run a non-HTTP function like the worker (sync ones in its thread pool), with the host's log lines."""
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", name, reason, invocation_id)
        if "context" not in kwargs and "context" in inspect.signature(user_function).parameters:
            kwargs["context"] = DevContext(invocation_id, name, self._function_directory, _trace_context({}))
        started = time.perf_counter()
        try:
            if is_async:
                _invocation_tls.invocation_id = invocation_id
                result: object = await user_function(**kwargs)
            else:
                call = functools.partial(_call_in_worker_thread, user_function, kwargs, invocation_id)
                result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except BaseException:
            log.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
            )
            raise
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        return result


def _call_in_worker_thread(function: Callable[..., object], kwargs: dict[str, object], invocation_id: str) -> object:
    _invocation_tls.invocation_id = invocation_id
    return function(**kwargs)


def create_asgi_app(
    app: func.FunctionApp,
    route_prefix: str = DEFAULT_ROUTE_PREFIX,
    *,
    route_order: RouteOrder = "precedence",
    max_workers: int | None = None,
    host_config: Mapping[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    host_json: str | os.PathLike[str] | None = None,
    queue_lease: float | None = None,
    keys: FunctionKeys | None = None,
) -> DevHostApp:
    """Index `app` and return the ASGI application serving its HTTP functions under `route_prefix`,
    its MCP tools at /runtime/webhooks/mcp, running its timer triggers while it is up, and its queue
    triggers with the options of `host_json` (tools/devhost_queues.py).

    Functions the host would put in error are left out and logged, as are routing warnings. `state_dir`
    is what the host keeps in storage (timer leases and schedule status); see `default_state_dir`.
    With `keys`,
    function keys are enforced by auth level as the host does in Azure; without, none is checked.
    """
    from datetime import UTC, datetime

    from tools.devhost_mcp import McpEndpoint, index_mcp_tools, read_mcp_options
    from tools.devhost_queues import DEFAULT_LEASE, build_queue_runner
    from tools.devhost_timers import TimerRunner, index_timers

    queues = build_queue_runner(app, host_json, lease=queue_lease or DEFAULT_LEASE)
    functions, others = index_functions(app)
    router = Router(functions, route_prefix, route_order)
    for name, error in router.errors.items():
        log.error("The '%s' function is in error: %s", name, error)
    for warning in router.warnings:
        log.warning("%s", warning)
    asgi_app = DevHostApp(router, non_http_functions=others, max_workers=max_workers, runners=[queues], keys=keys)
    indexed = fresh_functions(app)
    tools, tool_errors = index_mcp_tools(indexed)
    for name, error in tool_errors.items():
        router.errors[name] = error
        log.error("The '%s' function is in error: %s", name, error)
    if tools:
        asgi_app.extensions.append(McpEndpoint(tools, asgi_app.call_function, read_mcp_options(host_config)))
    timers, timer_errors = index_timers(indexed, datetime.now(UTC))
    for name, error in timer_errors.items():
        router.errors[name] = error
        log.error("The '%s' function is in error: %s", name, error)
    if timers:
        folder = Path(state_dir) if state_dir is not None else default_state_dir()
        asgi_app.extensions.append(TimerRunner(timers, asgi_app.call_function, folder))
    return asgi_app


def default_state_dir() -> Path:
    """DEVHOST_STATE_DIR, else .devhost/ in the working folder: dev hosts sharing it share timer leases,
    as function apps sharing a storage account do."""
    return Path(os.environ.get("DEVHOST_STATE_DIR") or Path.cwd() / ".devhost")


# --- serving --------------------------------------------------------------------------------------


def load_app(spec: str) -> func.FunctionApp:
    """Import `module:attribute` (attribute defaults to `app`) and return the FunctionApp."""
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ValueError(f"--app must look like module:attribute, not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in (attribute or "app").split("."):
        target = getattr(target, part)
    if not callable(getattr(target, "get_functions", None)):
        raise TypeError(f"{spec} is a {type(target).__name__}, not a FunctionApp")
    return cast("func.FunctionApp", target)


def _base_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - display only
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def format_route_table(asgi_app: DevHostApp, base_url: str) -> str:
    """The `Functions:` listing `func start` prints, with each function's auth level."""
    router = asgi_app.router
    lines = ["", "Functions:", ""]
    for route in router.by_name:
        fn = route.function
        url = f"{base_url}/{route.template.text.lstrip('/')}"
        lines.append(f"        {fn.name}: [{route.methods_label}] {url}  (authLevel: {fn.auth_level})")
    for extension in asgi_app.extensions:
        lines.extend(extension.describe(base_url))
    running = {name for runner in asgi_app.runners for name in runner.function_names}
    for name, trigger in asgi_app.non_http_functions:
        if any(extension.serves(name) for extension in asgi_app.extensions) or name in router.errors:
            continue
        lines.append(f"        {name}: {trigger}  ({'run' if name in running else 'not run'} by the dev host)")
    for name, error in router.errors.items():
        lines.append(f"        {name}: in error: {error}")
    if asgi_app.keys is None:
        note = (
            "Function keys are not checked: like Core Tools running locally, every auth level is served without a key."
        )
    else:
        note = (
            "Function keys are enforced as in Azure: send `x-functions-key: <key>` or `?code=<key>`; "
            "function level takes a host or function key, admin level the master key."
        )
    lines += ["", note, ""]
    return "\n".join(lines)


def _bind_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def serve_in_thread(asgi_app: AsgiApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `asgi_app` on a real uvicorn server in a background thread; yield its base URL."""
    import uvicorn

    sock = _bind_socket(host, port)
    config = uvicorn.Config(asgi_app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="devhost-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the dev host server thread exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the dev host server did not start within 15s")
            time.sleep(0.01)
        yield _base_url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.devhost",
        description="Serve the FunctionApp's HTTP functions locally with the Functions host's routing rules.",
    )
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="port to listen on; 0 picks a free one")
    parser.add_argument("--host-json", default="host.json", help="host.json to read routePrefix from")
    parser.add_argument(
        "--route-order",
        choices=("precedence", "host"),
        default="precedence",
        help="order for overlapping routes: ASP.NET Core precedence (default) or the host's function-name order",
    )
    parser.add_argument(
        "--local-settings",
        default=None,
        metavar="PATH",
        help="load the Values of this local.settings.json into the environment first, like Core Tools "
        "(off unless given, so test hosts get only the environment they are started with)",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        metavar="PATH",
        help="what the host keeps in storage: timer leases and schedule status "
        "(default $DEVHOST_STATE_DIR, else .devhost/ here)",
    )
    parser.add_argument(
        "--queue-lease",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a received queue message stays invisible while its function runs (renewed at half); "
        "the host's is 10 minutes, which a test of a killed host can shorten",
    )
    parser.add_argument(
        "--enforce-keys",
        action="store_true",
        help=f"check function keys by auth level as the host does in Azure (also {ENFORCE_KEYS_ENV}=true); "
        "off by default, like Core Tools",
    )
    parser.add_argument(
        "--keys-file",
        default=None,
        metavar="PATH",
        help=f"JSON keys to enforce ({{masterKey, functionKeys, functions}}); else the {KEYS_ENV} setting "
        f"(the same JSON inline) or {KEYS_FILE_ENV}; with neither, keys are generated and printed",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    started = time.perf_counter()
    if args.local_settings:
        loaded = load_local_settings(args.local_settings)
        log.info("loaded %d setting(s) from %s", len(loaded), args.local_settings)
    host_json = Path(args.host_json)
    host_config: dict[str, Any] = {}
    if host_json.is_file():
        route_prefix = read_route_prefix(host_json)
        host_config = json.loads(host_json.read_text(encoding="utf-8-sig"))
    else:
        log.warning("no host.json at %s: using the host's default routePrefix '%s'", host_json, DEFAULT_ROUTE_PREFIX)
        route_prefix = DEFAULT_ROUTE_PREFIX
    keys: FunctionKeys | None = None
    if args.enforce_keys or _env_flag(ENFORCE_KEYS_ENV):  # after --local-settings, which may set it
        try:
            keys = load_function_keys(args.keys_file)
        except KeysError as exc:
            log.error("%s", exc)
            return 1
        if keys is None:
            keys = FunctionKeys.generated()
            print(f"Generated function keys (master, then host 'default'): {keys.master} {keys.host['default']}")
    asgi_app = create_asgi_app(
        load_app(args.app),
        route_prefix,
        route_order=args.route_order,
        host_config=host_config,
        state_dir=args.state_dir,
        host_json=host_json if host_json.is_file() else None,
        queue_lease=args.queue_lease,
        keys=keys,
    )
    try:
        sock = _bind_socket(args.host, args.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    base_url = _base_url(args.host, sock.getsockname()[1])

    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(format_route_table(asgi_app, base_url), flush=True)
                log.info("Host started in %.2fs; listening on %s", time.perf_counter() - started, base_url)

    config = uvicorn.Config(
        asgi_app, log_config=None, log_level=args.log_level, access_log=args.log_level == "debug", lifespan="on"
    )

    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal with the handler it
    # found; a no-op SIGTERM handler turns that into a clean exit code 0 instead of death by signal.
    def _after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
        return None

    signal.signal(signal.SIGTERM, _after_graceful_shutdown)
    try:
        _Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
