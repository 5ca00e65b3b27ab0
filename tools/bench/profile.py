"""Where a search's time goes: the service's search path run in-process on the benchmark's data.

Run after the dev host has stopped (the embedded Qdrant folder admits one process), on the same
data, settings and queries. Each query runs through `MemoryService.search_memories` (what the
endpoint calls), through `Memory.search` on the service's own mem0 objects, and through plain mem0
(built without any of the service's parts but the embedder, on the same store client), in turn.
The HTTP figure minus the service figure is HTTP, routing, validation and JSON. Inside the service
call the stages are timed by wrapping the functions mem0 and the service call, and cProfile names
the hot functions.
"""

from __future__ import annotations

import cProfile
import functools
import io
import pstats
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.observability.percentiles import percentile

# (owner, attribute, stage name) of the search path: the service's hybrid searcher and mem0's own
# search, whichever the service uses; a step a version does not have is skipped.
SEARCH_STAGES: tuple[tuple[str, str, str], ...] = (
    ("embedder", "embed", "embed query"),
    ("embedder", "embed_batch", "embed batch"),
    ("vector_store", "candidates", "engine: dense + keyword candidates"),
    ("vector_store", "neighbours", "engine: write-order neighbours"),
    ("vector_store", "search", "vector search"),
    ("search_module", "own_scores", "own scores"),
    ("search_module", "add_context", "context"),
    ("searcher", "_records", "results"),
)
# The batch-add path (MemoryService.add_memories).
ADD_STAGES: tuple[tuple[str, str, str], ...] = (
    ("embedder", "embed_batch", "embed batch"),
    ("vector_store", "insert", "store insert"),
    ("history", "batch_add_history", "history write"),
    ("lemmatization", "lemmatize_for_bm25", "lemmatize"),
)


@dataclass
class StageTimer:
    """Wraps functions so that the time spent in them adds up per stage while `active`.

    Only calls on the thread that activated the timer count, and only the outermost wrapped call:
    embed() calls embed_batch(), an index build lists the store, and each second belongs to one
    stage. Work a search hands to other threads (prefetching) overlaps it and is not counted.
    """

    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _thread: int | None = None
    _depth: int = 0
    _undo: list[tuple[Any, str, Any, bool]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self._thread is not None

    @active.setter
    def active(self, on: bool) -> None:
        self._thread = threading.get_ident() if on else None

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr, None) if owner is not None else None
        if original is None:
            return  # this version has no such step
        own = attr in getattr(owner, "__dict__", {})

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._thread != threading.get_ident() or self._depth:
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

    def wrap_all(self, owners: dict[str, Any], stages: Sequence[tuple[str, str, str]]) -> None:
        for owner_name, attr, stage in stages:
            self.wrap(owners.get(owner_name), attr, stage)

    def restore(self) -> None:
        for owner, attr, original, own in reversed(self._undo):
            if own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)
        self._undo.clear()


def _owners(service: Any) -> dict[str, Any]:
    import mem0.memory.main as mem0_main
    import mem0.utils.lemmatization as lemmatization

    owners = {
        "embedder": service.embedder,
        "vector_store": service.store,
        "memory": service.engine.memory,
        "history": service.history,
        "searcher": getattr(service, "searcher", None),
        "mem0_main": mem0_main,
        "lemmatization": lemmatization,
    }
    try:
        import shared.search.hybrid as search_module

        owners["search_module"] = search_module
    except ImportError:  # a service without the hybrid searcher
        pass
    return owners


def _timed_ms(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def profile_search(
    service: Any,
    plain: Any,
    user_id: str,
    queries: Sequence[str],
    http_ms_p50: float | None,
    budget_s: float = 120.0,
    cprofile_queries: int = 10,
    cprofile_top: int = 15,
) -> dict[str, Any]:
    """Stage breakdown (mean ms per query), the service against mem0, and cProfile's hottest functions.

    Each query runs through the service, through `Memory.search` on the service's own mem0 objects
    and through `plain` mem0, one after the other, so the three see the same machine load. Stops
    early once `budget_s` is spent (at least 5 queries run): plain mem0 on the embedded store
    takes seconds per query at 50,000 points.
    """
    filters = {"user_id": user_id}
    calls: dict[str, Callable[[str], Any]] = {
        "service": lambda q: service.search_memories(user_id, q, 10),
        "mem0_same_store": lambda q: service.engine.memory.search(q, top_k=10, filters=filters),
    }
    if plain is not None:
        calls["plain_mem0"] = lambda q: plain.search(q, top_k=10, filters=filters)
    for query in queries[:2]:  # warm caches (model session, store, search index) before timing
        for call in calls.values():
            call(query)

    timer = StageTimer()
    timer.wrap_all(_owners(service), SEARCH_STAGES)
    ms: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.perf_counter() + budget_s
    try:
        for query in queries:
            for name, call in calls.items():
                timer.active = name == "service"
                ms[name].append(_timed_ms(functools.partial(call, query)))
                timer.active = False
            if len(ms["service"]) >= 5 and time.perf_counter() > deadline:
                break
    finally:
        timer.restore()

    n = len(ms["service"])
    stages = {name: round(total / n * 1000, 2) for name, total in timer.totals.items()}
    stages["other"] = round(sum(ms["service"]) / n - sum(stages.values()), 2)
    profiled = list(queries[: min(n, cprofile_queries)])
    result: dict[str, Any] = {"queries": n, "http_ms_p50": http_ms_p50}
    for name, samples in ms.items():
        result[f"{name}_ms_p50"] = round(percentile(samples, 50), 2)
        result[f"{name}_ms_p95"] = round(percentile(samples, 95), 2)
    result["stages_ms_mean"] = stages
    result["cprofile_queries"] = len(profiled)
    result["cprofile_top"] = _cprofile(lambda: [calls["service"](q) for q in profiled], cprofile_top)
    return result


def profile_adds(service: Any, batches: Sequence[Sequence[Any]], user_id: str) -> dict[str, Any]:
    """`MemoryService.add_memories` (what batch-add calls) in-process, its stages timed per batch.

    The first batch warms up and is not counted.
    """
    service.add_memories(user_id, batches[0])  # untimed: one-time costs (store and index set-up)
    batches = batches[1:]
    timer = StageTimer()
    timer.wrap_all(_owners(service), ADD_STAGES)
    batch_ms: list[float] = []
    try:
        for batch in batches:
            timer.active = True
            batch_ms.append(_timed_ms(functools.partial(service.add_memories, user_id, batch)))
            timer.active = False
    finally:
        timer.restore()
    n = len(batch_ms)
    memories = sum(len(b) for b in batches)
    stages = {name: round(total / n * 1000, 2) for name, total in timer.totals.items()}
    stages["other"] = round(sum(batch_ms) / n - sum(stages.values()), 2)
    return {
        "batches": n,
        "memories": memories,
        "per_s": round(memories / (sum(batch_ms) / 1000), 1),
        "batch_ms_mean": round(sum(batch_ms) / n, 2),
        "stages_ms_per_batch": stages,
    }


def probe_chroma(store: Any, embedder: Any, user_id: str, queries: Sequence[str]) -> dict[str, Any]:
    """The Chroma server's own query time on the user's collection (the adapter keeps one per user).

    What the adapter's candidates cost on the server: the dense query at two result counts, with
    and without payloads, and one keyword scan (`$regex` over the analysed documents), beside the
    bare HTTP round trip.
    """
    from shared.stores.vector.chroma import keyword_patterns, query_terms

    collection = store.client.get_collection(name=store.user_collection_name(user_id), embedding_function=None)
    vectors = [embedder.embed(q, "search") for q in queries]
    variants: dict[str, dict[str, Any]] = {
        "user's collection, 50 results, metadatas+documents": {"n_results": 50},
        "user's collection, 10 results, metadatas+documents": {"n_results": 10},
        "user's collection, 50 results, ids only": {"n_results": 50, "include": []},
    }
    out: dict[str, Any] = {}
    for name, kwargs in variants.items():
        collection.query(query_embeddings=[vectors[0]], **kwargs)  # warm
        ms = [_timed_ms(functools.partial(collection.query, query_embeddings=[v], **kwargs)) for v in vectors]
        out[name] = {"ms_p50": round(percentile(ms, 50), 2), "ms_p95": round(percentile(ms, 95), 2)}
    patterns = [p for q in queries if (p := keyword_patterns(query_terms(q)))]
    if patterns:
        scans = [
            _timed_ms(
                functools.partial(collection.get, where_document={"$regex": p[0]}, limit=100, include=["documents"])
            )
            for p in patterns
        ]
        out["keyword scan ($regex, any query term, 100 documents)"] = {
            "ms_p50": round(percentile(scans, 50), 2),
            "ms_p95": round(percentile(scans, 95), 2),
        }
    heartbeat = [_timed_ms(store.client.heartbeat) for _ in range(20)]
    out["heartbeat (HTTP round trip)"] = {
        "ms_p50": round(percentile(heartbeat, 50), 2),
        "ms_p95": round(percentile(heartbeat, 95), 2),
    }
    return out


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
