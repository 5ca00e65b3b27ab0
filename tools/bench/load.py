"""`python -m tools.bench load`: speed under synthetic load, on the embedded store and on a Chroma server.

Per store, on a fresh data folder (and a fresh Chroma collection):
1. start the dev host; seconds from Popen to the port opening and to the first search served (200);
2. single adds (`POST /api/memory/add`) for their own user: latency and memories/s;
3. other users' memories by batch-add (so the measured user is one among many);
4. the measured user's memories by batch-add, grown to each size in turn, with search p50/p95
   through HTTP at each size;
5. the worker's peak RSS (VmHWM), then the host stops and the search path is profiled in-process
   on the same data (tools/bench/profile.py).
`import function_app` is timed once per run, in fresh interpreters.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.common import REPO_ROOT, BenchError, latency_summary, loadavg_1m, machine_info
from tools.bench.host import Api, ServiceHost
from tools.bench.synthetic import TextStream, memory_items, memory_stream, query_stream

STORES = ("embedded", "chroma")


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
    seed: int = 7
    chroma_host: str | None = None
    chroma_port: int | None = None
    keep_data: bool = False
    quick: bool = False


FULL_DEFAULTS: dict[str, Any] = {
    "sizes": [1000, 10000],
    "others": 50000,
    "other_users": 50,
    "queries": 200,
    "warmup": 5,
    "single_adds": 1000,
    "batch_size": 100,
    "import_runs": 5,
    "profile_queries": 100,
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
}


# --- import time ---------------------------------------------------------------------------------
_IMPORT_SNIPPET = "import time; t=time.perf_counter(); import function_app; print(time.perf_counter()-t)"


def measure_import(runs: int) -> dict[str, Any]:
    """Median seconds of `import function_app` in fresh interpreters, and the slowest imports of one run."""
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_SNIPPET], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"`import function_app` failed:\n{done.stderr[-2000:]}")
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import function_app"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "median_s": round(statistics.median(samples), 3),
        "runs_s": [round(s, 3) for s in samples],
        "slowest_imports": slowest_imports(traced.stderr),
    }


def slowest_imports(importtime_output: str, top: int = 12) -> list[dict[str, Any]]:
    """The top-level packages that cost the most (cumulative ms), from `python -X importtime`."""
    by_package: dict[str, float] = {}
    pattern = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
    for line in importtime_output.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        cumulative_us, indent, module = int(match.group(2)), len(match.group(3)), match.group(4)
        if indent <= 1:  # direct imports of the entry point, or packages it pulls in at top level
            package = module.split(".")[0] if not module.startswith(("functions", "shared")) else module
            by_package[package] = by_package.get(package, 0.0) + cumulative_us / 1000
    ranked = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [{"module": name, "cumulative_ms": round(ms, 1)} for name, ms in ranked]


# --- one store -----------------------------------------------------------------------------------
@dataclass
class AddTimer:
    """Batch-add throughput, per phase (others, then each growth step of the measured user)."""

    phases: dict[str, list[float]] = field(default_factory=dict)  # phase -> [memories, seconds]
    batch_ms: list[float] = field(default_factory=list)

    def run(self, api: Api, phase: str, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        totals = self.phases.setdefault(phase, [0, 0.0])
        for user_id, items in batches:
            began = time.perf_counter()
            api.batch_add(user_id, items)
            elapsed = time.perf_counter() - began
            totals[0] += len(items)
            totals[1] += elapsed
            self.batch_ms.append(elapsed * 1000)

    def summary(self, batch_size: int) -> dict[str, Any]:
        count = int(sum(p[0] for p in self.phases.values()))
        seconds = sum(p[1] for p in self.phases.values())
        batches = latency_summary(self.batch_ms)
        return {
            "memories": count,
            "batch_size": batch_size,
            "per_s": _rate(count, seconds),
            "batch_ms_p50": batches["ms_p50"],
            "batch_ms_p95": batches["ms_p95"],
            "phases": [
                {"phase": name, "memories": int(n), "s": round(s, 2), "per_s": _rate(int(n), s)}
                for name, (n, s) in self.phases.items()
                if n
            ],
        }


def _rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def _batches(user_id: str, stream: TextStream, n: int, start: int, size: int) -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for offset in range(0, n, size):
        out.append((user_id, memory_items(stream, min(size, n - offset), start + offset)))
    return out


def measure_single_adds(api: Api, user_id: str, n: int, seed: int) -> dict[str, Any]:
    stream = memory_stream(seed, user_id)
    ms = []
    for item in memory_items(stream, n, 0):
        began = time.perf_counter()
        api.add(user_id, str(item["content"]), item["metadata"])  # type: ignore[arg-type]
        ms.append((time.perf_counter() - began) * 1000)
    summary = latency_summary(ms)
    summary["per_s"] = _rate(n, sum(ms) / 1000)
    return summary


def measure_searches(api: Api, user_id: str, queries: list[str], warmup: int) -> dict[str, Any]:
    for query in queries[:warmup]:
        api.search(user_id, query, 10)
    ms = []
    returned = 0
    for query in queries[warmup:]:
        began = time.perf_counter()
        results = api.search(user_id, query, 10)
        ms.append((time.perf_counter() - began) * 1000)
        returned += len(results)
    summary = latency_summary(ms)
    summary["mean_results"] = round(returned / len(ms), 1) if ms else 0
    return summary


@contextlib.contextmanager
def chroma_for(config: LoadConfig, run_id: str) -> Iterator[dict[str, str]]:
    """Settings for a Chroma server: the one given, or one started (and removed) for this run."""
    collection = f"bench_{run_id}"
    if config.chroma_host:
        port = config.chroma_port or 8000
        try:
            yield {"VECTOR_STORE": "chroma", "CHROMA_HOST": config.chroma_host, "CHROMA_PORT": str(port),
                   "COLLECTION_NAME": collection}  # fmt: skip
        finally:
            _drop_collections(config.chroma_host, port, collection)
        return
    from tests.support.chroma_server import ChromaServer, HarnessMissing

    try:
        server = ChromaServer()
    except HarnessMissing as error:
        raise BenchError(str(error)) from error
    with server:
        yield {"VECTOR_STORE": "chroma", "CHROMA_HOST": server.host, "CHROMA_PORT": str(server.port),
               "COLLECTION_NAME": collection}  # fmt: skip


def _drop_collections(host: str, port: int, collection: str) -> None:
    """Leave a shared Chroma server as we found it (mem0 adds an `_entities` collection beside ours)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    with contextlib.suppress(Exception):
        client = chromadb.HttpClient(host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False))
        for name in (collection, f"{collection}_entities"):
            with contextlib.suppress(Exception):
                client.delete_collection(name)


def run_store(store: str, config: LoadConfig, run_id: str, root: Path) -> dict[str, Any]:
    if store == "chroma":
        with chroma_for(config, run_id) as extra:
            return _run_store(store, config, run_id, root / store, extra)
    return _run_store(store, config, run_id, root / store, {})


def _run_store(store: str, config: LoadConfig, run_id: str, root: Path, extra: dict[str, str]) -> dict[str, Any]:
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{store}] starting the dev host (data in {data_dir})", file=sys.stderr, flush=True)
    host = ServiceHost(data_dir, extra, name=f"devhost-{store}")
    result: dict[str, Any] = {"store": store, "loadavg_1m_at_start": loadavg_1m()}
    startup = host.start()
    api = Api(host.url)
    user = f"bench-{run_id}-user"
    try:
        result["startup"] = {"listening_s": startup.listening_s, "first_search_s": startup.first_search_s}
        _progress(store, f"first search served {startup.first_search_s:.2f}s after start; single adds")
        result["single_add"] = measure_single_adds(api, f"bench-{run_id}-single", config.single_adds, config.seed)
        adds = AddTimer()
        _add_others(api, adds, config, run_id, store)
        total = config.single_adds + config.others
        result["search"] = []
        have = 0
        queries = query_stream(config.seed).take(config.queries + config.warmup)
        user_stream = memory_stream(config.seed, user)
        for size in sorted(config.sizes):
            _progress(store, f"user memories {have} -> {size}")
            adds.run(api, f"user to {size}", _batches(user, user_stream, size - have, have, config.batch_size))
            total += size - have
            have = size
            row = measure_searches(api, user, queries, config.warmup)
            result["search"].append({"user_memories": size, "total_memories": total, **row})
            _progress(store, f"search p50 {row['ms_p50']:.1f} ms, p95 {row['ms_p95']:.1f} ms at {size}/{total}")
        result["batch_add"] = adds.summary(config.batch_size)
        result["worker_peak_rss_mb"] = host.peak_rss_mb()
    finally:
        api.close()
        host.stop()
    if config.profile_queries > 0 and config.sizes:
        _progress(store, "profiling the search path in-process")
        http_p50 = result["search"][-1]["ms_p50"]
        result["profile"] = _profile(data_dir, extra, user, config, http_p50)
        result["profile"]["user_memories"] = result["search"][-1]["user_memories"]
        result["profile"]["total_memories"] = result["search"][-1]["total_memories"]
    result["loadavg_1m_at_end"] = loadavg_1m()
    return result


def _add_others(api: Api, adds: AddTimer, config: LoadConfig, run_id: str, store: str) -> None:
    users = max(1, config.other_users)
    per_user, extra = divmod(config.others, users)
    _progress(store, f"adding {config.others} memories of {users} other users")
    for i in range(users):
        count = per_user + (1 if i < extra else 0)
        other = f"bench-{run_id}-other-{i}"
        adds.run(api, "others", _batches(other, memory_stream(config.seed, other), count, 0, config.batch_size))


def _profile(data_dir: Path, extra: dict[str, str], user: str, config: LoadConfig, http_p50: float) -> dict[str, Any]:
    from tools.bench.inproc import build_service, close_memory, settings_for
    from tools.bench.profile import profile_search

    service = build_service(settings_for(data_dir, extra))
    try:
        queries = query_stream(config.seed, "profile").take(config.profile_queries)
        return profile_search(service, user, queries, http_p50)
    finally:
        close_memory(service.memory)


def _progress(store: str, message: str) -> None:
    print(f"[{store}] {message}", file=sys.stderr, flush=True)


# --- the run -------------------------------------------------------------------------------------
def run_load(config: LoadConfig) -> dict[str, Any]:
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    result: dict[str, Any] = {
        "benchmark": "load",
        "run_id": run_id,
        "config": {k: v for k, v in vars(config).items() if k not in ("keep_data",)},
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
