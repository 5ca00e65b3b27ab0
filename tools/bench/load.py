"""`python -m tools.bench load`: speed under synthetic load, on the embedded store and on a Chroma server.

Per store, on a fresh data folder (and a fresh Chroma collection):
1. a cold start in a fresh interpreter, step by step (tools/bench/coldstart.py);
2. start the dev host; seconds from Popen to the port opening and to the first search served (200);
3. single adds (`POST /api/memory/add`) for their own user: latency and memories/s;
4. other users' memories by batch-add (so the measured user is one among many);
5. the measured user's memories by batch-add, grown to each size in turn, with search p50/p95
   through HTTP at each size;
6. the worker's peak RSS (VmHWM), then the host stops and the search path is profiled in-process
   on the same data (tools/bench/profile.py).
`import function_app` is timed once per run, in fresh interpreters.

Beside wall-clock figures, the worker's own CPU time per operation is reported: on a machine shared
with other work it is inflated much less than latency is.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.observability.percentiles import percentile
from tools.bench.common import BenchError, latency_summary, loadavg_1m, machine_info
from tools.bench.host import Api, ServiceHost
from tools.bench.startup import measure_cold_start, measure_import
from tools.bench.synthetic import TextStream, memory_items, memory_stream, query_stream

STORES = ("embedded", "chroma", "qdrant")
ADD_PROFILE_BATCHES = 5
Batches = list[tuple[str, list[dict[str, Any]]]]


@dataclass
class LoadConfig:
    sizes: list[int]
    others: int
    other_users: int
    stores: list[str]
    queries: int
    warmup: int
    single_adds: int
    batch_size: int
    import_runs: int
    profile_queries: int
    search_budget_s: float
    cold_restarts: int = 3
    seed: int = 7
    chroma_host: str | None = None
    chroma_port: int | None = None
    keep_data: bool = False
    quick: bool = False
    # The mixed phase (tools/bench/mixed.py) on the same worker, after the searches: its own users.
    mixed_users: int = 100
    mixed_per_user: int = 200
    mixed_clients: tuple[int, ...] = (1, 8, 32)
    mixed_seconds: float = 20.0
    # "local" (the zero-setup model) or "fake-openai": embeddings of 1,536 dimensions from the fake
    # OpenAI-compatible server over HTTP, each answer `embedding_latency_ms` late (the cloud's shape).
    embeddings: str = "local"
    embedding_latency_ms: float = 30.0


FULL_DEFAULTS: dict[str, Any] = {
    "sizes": [300, 1000, 10000],
    "others": 50000,
    "other_users": 50,
    "queries": 200,
    "warmup": 5,
    "single_adds": 1000,
    "batch_size": 100,
    "import_runs": 5,
    "profile_queries": 100,
    "search_budget_s": 180.0,
    "cold_restarts": 5,
    "mixed_users": 100,
    "mixed_per_user": 200,
    "mixed_seconds": 20.0,
}
# A smoke run for CI: every code path, small enough for well under a minute per store.
QUICK_DEFAULTS: dict[str, Any] = {
    "sizes": [200],
    "others": 300,
    "other_users": 3,
    "queries": 10,
    "warmup": 2,
    "single_adds": 10,
    "batch_size": 100,
    "import_runs": 2,
    "profile_queries": 5,
    "search_budget_s": 30.0,
    "cold_restarts": 1,
    "mixed_users": 3,
    "mixed_per_user": 20,
    "mixed_seconds": 2.0,
}


# --- writes --------------------------------------------------------------------------------------
@dataclass
class AddTimer:
    """Batch-add throughput per phase (others, then each growth step of the measured user)."""

    cpu: Callable[[], float | None]
    phases: dict[str, list[float]] = field(default_factory=dict)  # phase -> [memories, seconds, cpu seconds]
    batch_ms: list[float] = field(default_factory=list)

    def run(self, api: Api, phase: str, batches: Batches) -> None:
        totals = self.phases.setdefault(phase, [0, 0.0, 0.0])
        cpu_before = self.cpu()
        for user_id, items in batches:
            began = time.perf_counter()
            api.batch_add(user_id, items)
            elapsed = time.perf_counter() - began
            totals[0] += len(items)
            totals[1] += elapsed
            self.batch_ms.append(elapsed * 1000)
        cpu_after = self.cpu()
        if cpu_before is not None and cpu_after is not None:
            totals[2] += cpu_after - cpu_before

    def summary(self, batch_size: int) -> dict[str, Any]:
        count = int(sum(p[0] for p in self.phases.values()))
        seconds = sum(p[1] for p in self.phases.values())
        cpu = sum(p[2] for p in self.phases.values())
        batches = latency_summary(self.batch_ms)
        return {
            "memories": count,
            "batch_size": batch_size,
            "per_s": _rate(count, seconds),
            "worker_cpu_ms_per_memory": round(cpu / count * 1000, 2) if count else None,
            "batch_ms_p50": batches["ms_p50"],
            "batch_ms_p95": batches["ms_p95"],
            "phases": [
                {"phase": name, "memories": int(n), "s": round(s, 2), "per_s": _rate(int(n), s)}
                for name, (n, s, _) in self.phases.items()
                if n
            ],
        }


def _rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def _batches(user_id: str, stream: TextStream, n: int, start: int, size: int) -> Batches:
    return [(user_id, memory_items(stream, min(size, n - offset), start + offset)) for offset in range(0, n, size)]


def measure_single_adds(api: Api, host: ServiceHost, user_id: str, n: int, seed: int) -> dict[str, Any]:
    ms = []
    cpu_before = host.cpu_seconds()
    for item in memory_items(memory_stream(seed, user_id), n, 0):
        began = time.perf_counter()
        api.add(user_id, item["content"], item["metadata"])
        ms.append((time.perf_counter() - began) * 1000)
    summary = latency_summary(ms)
    summary["per_s"] = _rate(n, sum(ms) / 1000)
    summary["worker_cpu_ms"] = _cpu_ms_per_op(cpu_before, host.cpu_seconds(), n)
    return summary


def _cpu_ms_per_op(before: float | None, after: float | None, n: int) -> float | None:
    if before is None or after is None or n == 0:
        return None
    return round((after - before) / n * 1000, 2)


# --- searches ------------------------------------------------------------------------------------
def measure_searches(
    api: Api, host: ServiceHost, user_id: str, queries: list[str], warmup: int, budget_s: float
) -> dict[str, Any]:
    """Timed searches, one at a time; stops early once `budget_s` is spent (at least 20 done)."""
    for query in queries[:warmup]:
        api.search(user_id, query, 10)
    ms = []
    returned = 0
    cpu_before = host.cpu_seconds()
    deadline = time.perf_counter() + budget_s
    for query in queries[warmup:]:
        began = time.perf_counter()
        results = api.search(user_id, query, 10)
        ms.append((time.perf_counter() - began) * 1000)
        returned += len(results)
        if len(ms) >= 20 and time.perf_counter() > deadline:
            break
    summary = latency_summary(ms)
    summary["worker_cpu_ms"] = _cpu_ms_per_op(cpu_before, host.cpu_seconds(), len(ms))
    summary["mean_results"] = round(returned / len(ms), 1) if ms else 0
    return summary


def measure_cold_user(
    api: Api, host: ServiceHost, user_id: str, other_id: str, queries: list[str], restarts: int
) -> dict[str, Any]:
    """A user's first search on a freshly started worker, against that worker's warm searches.

    Each round restarts the dev host, warms it with two searches of another user who has memories
    (so that the model, the libraries and every code path of a search have run once: a worker's own
    start, measured apart), times this user's first search, then its next ten. What is left is what
    the worker does for a user it has not seen. One run, so the ratio compares like with like.
    """
    first: list[float] = []
    warm: list[float] = []
    for round_ in range(max(1, restarts)):
        host.stop()
        host.start()
        for warmup in queries[-2:]:
            api.search(other_id, warmup, 10)
        query = queries[round_ % len(queries)]
        began = time.perf_counter()
        api.search(user_id, query, 10)
        first.append((time.perf_counter() - began) * 1000)
        for other in queries[round_ + 1 : round_ + 11]:
            began = time.perf_counter()
            api.search(user_id, other, 10)
            warm.append((time.perf_counter() - began) * 1000)
    first_p50, warm_p50 = percentile(first, 50), percentile(warm, 50)
    return {
        "restarts": len(first),
        "first_ms_p50": round(first_p50, 2),
        "first_ms_max": round(max(first), 2),
        "warm_ms_p50": round(warm_p50, 2),
        "first_over_warm": round(first_p50 / warm_p50, 2) if warm_p50 else None,
    }


# --- stores --------------------------------------------------------------------------------------
@contextlib.contextmanager
def chroma_for(config: LoadConfig, run_id: str) -> Iterator[dict[str, str]]:
    """Settings for a Chroma server: the one given, or one started (and removed) for this run."""
    collection = f"bench_{run_id}"
    if config.chroma_host:
        port = config.chroma_port or 8000
        try:
            yield _chroma_env(config.chroma_host, port, collection)
        finally:
            _drop_collections(config.chroma_host, port, collection)
        return
    from tools.harness.chroma_server import ChromaServer, HarnessMissing

    try:
        server = ChromaServer()
    except HarnessMissing as error:
        raise BenchError(str(error)) from error
    with server:
        yield _chroma_env(server.host, server.port, collection)


def _chroma_env(host: str, port: int, collection: str) -> dict[str, str]:
    return {"VECTOR_STORE": "chroma", "CHROMA_HOST": host, "CHROMA_PORT": str(port), "COLLECTION_NAME": collection}


def _drop_collections(host: str, port: int, collection: str) -> None:
    """Leave a shared Chroma server as we found it (mem0 adds an `_entities` collection beside ours)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    with contextlib.suppress(Exception):
        client = chromadb.HttpClient(host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False))
        for name in (collection, f"{collection}_entities"):
            with contextlib.suppress(Exception):
                client.delete_collection(name)


def qdrant_env(run_id: str) -> dict[str, str]:
    """Settings for the Qdrant server at QDRANT_URL (QDRANT_API_KEY passed on), one collection per run."""
    import os

    url = os.environ.get("QDRANT_URL")
    if not url:
        raise BenchError("--store qdrant loads the Qdrant server at QDRANT_URL: set it (e.g. http://127.0.0.1:6333)")
    env = {"VECTOR_STORE": "qdrant", "QDRANT_URL": url, "COLLECTION_NAME": f"bench_{run_id}"}
    if os.environ.get("QDRANT_API_KEY"):
        env["QDRANT_API_KEY"] = os.environ["QDRANT_API_KEY"]
    return env


@contextlib.contextmanager
def embeddings_for(config: LoadConfig) -> Iterator[dict[str, str]]:
    """Settings for the configured embeddings: none for the local model, else a fake server started here."""
    if config.embeddings == "local":
        yield {}
        return
    from tools.harness.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(latency=config.embedding_latency_ms / 1000) as server:
        yield {
            "EMBEDDING_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "bench",
            "LLM_PROVIDER": "openai",
        }


def run_store(store: str, config: LoadConfig, run_id: str, root: Path) -> dict[str, Any]:
    with embeddings_for(config) as embedding_env:
        if store == "chroma":
            with chroma_for(config, run_id) as extra:
                return _run_store(store, config, run_id, root / store, {**extra, **embedding_env})
        extra = qdrant_env(run_id) if store == "qdrant" else {}
        return _run_store(store, config, run_id, root / store, {**extra, **embedding_env})


def _run_store(store: str, config: LoadConfig, run_id: str, root: Path, extra: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {"store": store, "loadavg_1m_at_start": loadavg_1m()}
    _progress(store, "cold start, step by step, in a fresh interpreter")
    # Its own folder: the embedded store admits one process, and the host's folder must start empty.
    result["cold_start_steps_s"] = measure_cold_start(root / "coldstart" / "data", extra)
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    _progress(store, f"starting the dev host (data in {data_dir})")
    host = ServiceHost(data_dir, extra, name=f"devhost-{store}")
    startup = host.start()
    result["startup"] = {
        "listening_s": startup.listening_s,
        "first_search_s": startup.first_search_s,
        # What the worker holds before any memory is added: libraries, the model, an empty store.
        "rss_after_first_search_mb": host.memory_mb("VmRSS"),
    }
    api = Api(host.url)
    user = f"bench-{run_id}-user"
    queries = query_stream(config.seed).take(config.queries + config.warmup)
    try:
        _progress(store, f"first search served {startup.first_search_s:.2f}s after start; single adds")
        result["single_add"] = measure_single_adds(api, host, f"bench-{run_id}-single", config.single_adds, config.seed)
        adds = AddTimer(host.cpu_seconds)
        _add_others(api, adds, config, run_id, store)
        warm_user = f"bench-{run_id}-single"  # has memories already: warms a restarted worker
        result["search"] = _grow_and_search(api, host, adds, config, user, warm_user, queries, store)
        result["batch_add"] = adds.summary(config.batch_size)
        if config.mixed_users > 0 and config.mixed_seconds > 0:
            result["mixed"] = _mixed(host, config, run_id, store)
        result["worker_peak_rss_mb"] = host.peak_rss_mb()
        # RSS counts the engine's memory-mapped files too: page cache the kernel can reclaim.
        result["worker_rss_anon_mb_at_end"] = host.memory_mb("RssAnon")
        result["worker_rss_file_mb_at_end"] = host.memory_mb("RssFile")
        result["worker_pss_mb_at_end"] = host.pss_mb()
    finally:
        api.close()
        host.stop()
    if config.profile_queries > 0 and result["search"]:
        _progress(store, "profiling the search path in-process on the same data")
        last = result["search"][-1]
        timed = queries[config.warmup :][: config.profile_queries]  # the very queries HTTP was timed on
        profile = _profile(data_dir, extra, user, timed, last["ms_p50"], config)
        result["profile"] = {
            "user_memories": last["user_memories"],
            "total_memories": last["total_memories"],
            # The warm searches of a restarted worker: the shard freshly loaded, as in-process. The
            # worker that wrote the data searches slower (the engine's structures grown by inserts, not
            # our code: measured in-process, candidates 14.1 ms before a reopen and 7.4 ms after).
            "http_restarted_worker_ms_p50": (last.get("cold_user") or {}).get("warm_ms_p50"),
            **profile,
        }
    result["loadavg_1m_at_end"] = loadavg_1m()
    return result


def _grow_and_search(
    api: Api,
    host: ServiceHost,
    adds: AddTimer,
    config: LoadConfig,
    user: str,
    warm_user: str,
    queries: list[str],
    store: str,
) -> list[dict[str, Any]]:
    rows = []
    have = 0
    total = config.single_adds + config.others
    stream = memory_stream(config.seed, user)
    for size in sorted(config.sizes):
        _progress(store, f"measured user's memories {have} -> {size}")
        adds.run(api, f"user to {size}", _batches(user, stream, size - have, have, config.batch_size))
        total += size - have
        have = size
        row = measure_searches(api, host, user, queries, config.warmup, config.search_budget_s)
        cold = measure_cold_user(api, host, user, warm_user, queries, config.cold_restarts)
        rows.append({"user_memories": size, "total_memories": total, **row, "cold_user": cold})
        _progress(
            store,
            f"search p50 {row['ms_p50']:.1f} ms, p95 {row['ms_p95']:.1f} ms at {size}/{total}; "
            f"a user's first search on a fresh worker {cold['first_ms_p50']:.1f} ms, "
            f"warm {cold['warm_ms_p50']:.1f} ms",
        )
    return rows


def _mixed(host: ServiceHost, config: LoadConfig, run_id: str, store: str) -> dict[str, Any]:
    from tools.bench.mixed import MixedConfig, seed_and_load

    mixed = MixedConfig(
        users=config.mixed_users,
        per_user=config.mixed_per_user,
        clients=config.mixed_clients,
        seconds=config.mixed_seconds,
        seed=config.seed,
        user_prefix=f"bench-{run_id}-mixed",
    )
    return seed_and_load(host.url, mixed, host, lambda line: _progress(store, line.strip()))


def _add_others(api: Api, adds: AddTimer, config: LoadConfig, run_id: str, store: str) -> None:
    users = max(1, config.other_users)
    per_user, remainder = divmod(config.others, users)
    _progress(store, f"adding {config.others} memories of {users} other users")
    for i in range(users):
        count = per_user + (1 if i < remainder else 0)
        other = f"bench-{run_id}-other-{i}"
        adds.run(api, "others", _batches(other, memory_stream(config.seed, other), count, 0, config.batch_size))


def _profile(
    data_dir: Path, extra: dict[str, str], user: str, queries: list[str], http_p50: float, config: LoadConfig
) -> dict[str, Any]:
    """Search and batch-add profiles in-process on the host's data.

    No plain-mem0 comparison on the same data: mem0 has no adapter for the embedded Qdrant Edge, and
    its Chroma adapter reads one shared collection, not the per-user layout the service writes
    (`tools.bench locomo --baseline mem0` compares with plain mem0 on a store of its own).
    """
    from shared.contract import MemoryInput
    from tools.bench.inproc import build_service, settings_for
    from tools.bench.profile import probe_chroma, profile_adds, profile_search

    settings = settings_for(data_dir, extra)
    service = build_service(settings)
    try:
        profile = profile_search(service, None, user, queries, http_p50, budget_s=config.search_budget_s)
        if settings.vector_store == "chroma":
            profile["chroma_server_query_ms"] = probe_chroma(service.store, service.embedder, user, queries[:30])
        # Last, and for a user of its own: these writes must not change what was measured above.
        scratch = f"{user}-add-profile"
        stream = memory_stream(config.seed, scratch)
        size = config.batch_size
        batches = [
            [MemoryInput.model_validate(item) for item in memory_items(stream, size, i * size)]
            for i in range(ADD_PROFILE_BATCHES + 1)
        ]
        profile["batch_add"] = profile_adds(service, batches, scratch)
    finally:
        service.close()
    return profile


def _progress(store: str, message: str) -> None:
    print(f"[{store}] {message}", file=sys.stderr, flush=True)


# --- the run -------------------------------------------------------------------------------------
def run_load(config: LoadConfig) -> dict[str, Any]:
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    result: dict[str, Any] = {
        "benchmark": "load",
        "run_id": run_id,
        "config": {k: v for k, v in vars(config).items() if k != "keep_data"},
        "machine": machine_info(),
    }
    print("timing `import function_app` in fresh interpreters", file=sys.stderr, flush=True)
    result["import_function_app"] = measure_import(config.import_runs)
    root = Path(tempfile.mkdtemp(prefix=f"bench-load-{run_id}-"))
    try:
        result["stores"] = {store: run_store(store, config, run_id, root) for store in config.stores}
    finally:
        if config.keep_data:
            print(f"data kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["machine"]["loadavg_1m_at_end"] = loadavg_1m()
    return result
