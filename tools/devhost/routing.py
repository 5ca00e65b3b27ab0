"""The host's route table: each HTTP function's route under the route prefix, validated as the host does,
tried in ASP.NET Core precedence order (or the host's function-name order), with start-up warnings
where the two orders disagree (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from tools.devhost.indexing import HttpFunction
from tools.devhost.templates import RouteSegment, RouteTemplate, RouteTemplateError, parse_route_template

RouteOrder = Literal["precedence", "host"]

# host ScriptHost.ValidateHttpFunction rejects routes that merely start with these (so "administer" too).
RESERVED_ROUTE_STARTS = ("admin", "runtime")


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
