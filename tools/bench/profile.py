"""Where a search's time goes: the service's search path run in-process on the benchmark's data.

Run after the dev host has stopped (the embedded Qdrant folder admits one process), on the same
data, settings and queries. Each query runs through `MemoryService.search_memories` (what the
endpoint calls) and through `Memory.search` on the service's own mem0 objects, alternately; then
plain mem0 (built without any of the service's parts but the embedder) answers the same queries.
The HTTP figure minus the service figure is HTTP, routing, validation and JSON. Inside the service
call the stages are timed by wrapping the functions mem0 and the service call, and cProfile names
the hot functions.
"""

from __future__ import annotations

import cProfile
import functools
import io
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.bench.common import percentile

# (object path from the service, attribute, stage name). mem0 2.2.1's search calls these in turn.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("embedder", "embed", "embed query"),
    ("embedder", "embed_batch", "embed batch"),
    ("vector_store", "search", "vector search"),
    ("vector_store", "keyword_search", "keyword search"),
    ("vector_store", "list", "store list"),
    ("vector_store", "get", "store get"),
    ("memory", "_compute_entity_boosts", "entity boosts"),
    ("mem0_main", "lemmatize_for_bm25", "lemmatize"),
    ("mem0_main", "extract_entities", "entity extraction"),
    ("mem0_main", "score_and_rank", "score and rank"),
)


@dataclass
class StageTimer:
    """Wraps functions so that the time spent in them adds up per stage while `active`."""

    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    active: bool = False
    _depth: int = 0
    _undo: list[tuple[Any, str, Any, bool]] = field(default_factory=list)

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            return  # this mem0 version has no such step
        own = attr in getattr(owner, "__dict__", {})

        def timed(*args: Any, **kwargs: Any) -> Any:
            # Only the outermost wrapped call counts: embed() calls embed_batch(), entity boosts embed
            # and search, and each second belongs to one stage.
            if not self.active or self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[stage] += time.perf_counter() - began
                self._depth -= 1

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original, own))

    def restore(self) -> None:
        for owner, attr, original, own in reversed(self._undo):
            if own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)
        self._undo.clear()


def _owners(service: Any) -> dict[str, Any]:
    import mem0.memory.main as mem0_main

    return {
        "embedder": service.memory.embedding_model,
        "vector_store": service.memory.vector_store,
        "memory": service.memory,
        "mem0_main": mem0_main,
    }


def _timed_ms(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def profile_search(
    service: Any,
    user_id: str,
    queries: Sequence[str],
    http_ms_p50: float | None,
    budget_s: float = 120.0,
    cprofile_queries: int = 10,
    cprofile_top: int = 15,
) -> dict[str, Any]:
    """Stage breakdown (mean ms per query), service vs plain mem0, and cProfile's hottest functions.

    Stops early once `budget_s` is spent (at least 5 queries run): on a slow store a full set of
    queries would take longer than it tells.
    """
    memory = service.memory
    filters = {"user_id": user_id}
    for query in queries[:2]:  # warm caches (model session, store) before anything is timed
        service.search_memories(user_id, query, 10)

    timer = StageTimer()
    for owner_name, attr, stage in STAGES:
        timer.wrap(_owners(service)[owner_name], attr, stage)
    service_ms: list[float] = []
    mem0_ms: list[float] = []
    deadline = time.perf_counter() + budget_s
    try:
        for query in queries:
            timer.active = True
            service_ms.append(_timed_ms(functools.partial(service.search_memories, user_id, query, 10)))
            timer.active = False
            mem0_ms.append(_timed_ms(functools.partial(memory.search, query, top_k=10, filters=filters)))
            if len(service_ms) >= 5 and time.perf_counter() > deadline:
                break
    finally:
        timer.restore()

    n = len(service_ms)
    stages = {name: round(total / n * 1000, 2) for name, total in timer.totals.items()}
    service_mean = sum(service_ms) / n
    stages["other (mem0 formatting + service)"] = round(service_mean - sum(stages.values()), 2)
    profiled = list(queries[: min(n, cprofile_queries)])
    return {
        "queries": n,
        "http_ms_p50": http_ms_p50,
        "service_ms_p50": round(percentile(service_ms, 50), 2),
        "service_ms_p95": round(percentile(service_ms, 95), 2),
        "mem0_same_store_ms_p50": round(percentile(mem0_ms, 50), 2),
        "mem0_same_store_ms_p95": round(percentile(mem0_ms, 95), 2),
        "stages_ms_mean": stages,
        "cprofile_queries": len(profiled),
        "cprofile_top": _cprofile(lambda: [service.search_memories(user_id, q, 10) for q in profiled], cprofile_top),
    }


def time_plain_mem0(memory: Any, user_id: str, queries: Sequence[str], budget_s: float = 120.0) -> dict[str, Any]:
    """Plain mem0 (`Memory.search` with its defaults, no service parts) on the same data and queries."""
    filters = {"user_id": user_id}
    for query in queries[:2]:
        memory.search(query, top_k=10, filters=filters)
    ms: list[float] = []
    deadline = time.perf_counter() + budget_s
    for query in queries:
        ms.append(_timed_ms(functools.partial(memory.search, query, top_k=10, filters=filters)))
        if len(ms) >= 5 and time.perf_counter() > deadline:
            break
    return {
        "plain_mem0_queries": len(ms),
        "plain_mem0_ms_p50": round(percentile(ms, 50), 2),
        "plain_mem0_ms_p95": round(percentile(ms, 95), 2),
    }


def _cprofile(call: Callable[[], Any], top: int) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        call()
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    # Keep the column header and the rows; pstats prints a preamble first.
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return [line for line in lines[start:] if line.strip()]
