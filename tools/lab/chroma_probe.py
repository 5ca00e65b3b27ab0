"""The Chroma adapter (shared/stores/vector/chroma/) measured on a real Chroma server.

Timing: fills the store with `--total` memories (random unit vectors, sentences drawn from the
LoCoMo dev turns) of which `--user` belong to one user and the rest to `--others` other users,
then times `candidates` (and its engine calls alone, `neighbours`, `count_user`) over `--calls`
LoCoMo questions. Retrieval quality on Chroma is `python -m tools.lab.retrieval_lab --store chroma`.
Without `--port` it starts a throwaway server from the test harness's venv on a free port.

    .venv/bin/python -m tools.lab.chroma_probe                       # 10,000 of 60,000, 100 calls
    .venv/bin/python -m tools.lab.chroma_probe --port 8000 --keep    # an existing server; keep the data

The question texts and turn texts come from ../shared/data (never copied into the repo).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "locomo" / "locomo_dev.json"


def texts(path: Path) -> tuple[list[str], list[str]]:
    """LoCoMo turns ("Speaker: text") and questions."""
    turns: list[str] = []
    questions: list[str] = []
    for sample in json.loads(path.read_text()):
        for key, session in sample["conversation"].items():
            if key.startswith("session_") and isinstance(session, list):
                turns.extend(f"{t['speaker']}: {t['text']}" for t in session)
        questions.extend(str(qa["question"]) for qa in sample["qa"])
    return turns, questions


def unit_vectors(rng: np.random.Generator, count: int, dims: int) -> np.ndarray:
    v = rng.standard_normal((count, dims)).astype(np.float32)
    unit: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return unit


def fill(store: Any, total: int, user: int, others: int, dims: int, sentences: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    owners = ["probe-user"] * user + [f"other-{i % others}" for i in range(total - user)]
    pick.shuffle(owners)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    batch = 1000
    began = time.perf_counter()
    for at in range(0, total, batch):
        n = min(batch, total - at)
        payloads = []
        for i in range(at, at + n):
            created = (start + timedelta(minutes=i)).isoformat()
            payloads.append(
                {
                    "user_id": owners[i],
                    "data": pick.choice(sentences),
                    "hash": uuid.uuid4().hex,
                    "created_at": created,
                    "updated_at": created,
                    "category": pick.choice(["work", "family", "hobby", "travel"]),
                }
            )
        store.insert(unit_vectors(rng, n, dims).tolist(), payloads, [str(uuid.uuid4()) for _ in range(n)])
    elapsed = time.perf_counter() - began
    print(f"filled {total} memories in {elapsed:.1f}s ({total / elapsed:.0f}/s)")


def timed(name: str, calls: int, fn: Callable[[int], Any]) -> None:
    fn(0)  # one warm-up call: connection set-up is not what is measured
    times = []
    for i in range(calls):
        began = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p95 = times[max(0, round(0.95 * len(times)) - 1)]
    print(f"{name:<42} median {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms   ({calls} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="an existing Chroma server (default: start one on a free port)")
    parser.add_argument("--collection", default="chroma-probe")
    parser.add_argument("--total", type=int, default=60_000)
    parser.add_argument("--user", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=50)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--limit", type=int, default=60, help="candidates asked of each side")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--keep", action="store_true", help="reuse a filled store and keep it afterwards")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import chromadb

    from shared.contract import SearchFilters
    from shared.stores.vector.chroma import ChromaVectorStore, keyword_patterns, query_terms

    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    server = None
    host, port = args.host, args.port
    if port is None:
        from tools.harness.chroma_server import ChromaServer

        server = ChromaServer()
        server.start()
        host, port = server.host, server.port
    try:
        client = chromadb.HttpClient(host=host, port=port)
        store = ChromaVectorStore(client, args.collection, args.dims)
        user, limit = "probe-user", args.limit
        if not (args.keep and store.catalog.count() >= args.total):
            store.reset()
            sentences, _ = texts(args.data)
            fill(store, args.total, args.user, args.others, args.dims, sentences, args.seed)
        _, questions = texts(args.data)
        pick = random.Random(args.seed)
        asked = [pick.choice(questions) for _ in range(args.calls + 1)]
        vectors = unit_vectors(np.random.default_rng(args.seed + 1), args.calls + 1, args.dims).tolist()
        mine = client.get_collection(store.user_collection_name(user), embedding_function=None)
        print(f"user memories {store.count_user(user)} of {args.total}")

        kinds = {"dense": 0, "keyword": 0, "exhaustive": 0}

        def candidates(i: int, filters: SearchFilters | None = None) -> None:
            found = store.candidates(user, vectors[i], asked[i], limit, filters)
            kinds["dense"] += sum(1 for c in found.items if c.keyword == 0.0)
            kinds["keyword"] += sum(1 for c in found.items if c.keyword > 0.0)
            kinds["exhaustive"] += int(found.keyword_exhaustive)

        timed(f"candidates, limit {limit}", args.calls, candidates)
        print(
            f"  per call: {kinds['dense'] / (args.calls + 1):.1f} without a query term, "
            f"{kinds['keyword'] / (args.calls + 1):.1f} with one; "
            f"keyword side exhaustive in {kinds['exhaustive']} of {args.calls + 1}"
        )
        filters = SearchFilters(categories=["work", "travel"], created_after=datetime(2025, 1, 10, tzinfo=UTC))
        timed("candidates with category + date filters", args.calls, lambda i: candidates(i, filters))
        timed(
            "  dense query alone",
            args.calls,
            lambda i: mine.query(
                query_embeddings=[vectors[i]], n_results=limit, include=["metadatas", "documents", "distances"]
            ),
        )
        for n, name in enumerate(("any term", "two terms")):
            timed(
                f"  keyword scan alone ({name})",
                args.calls,
                lambda i, n=n: mine.get(  # type: ignore[misc]
                    where_document={"$regex": (keyword_patterns(query_terms(asked[i])) * 2)[n]},
                    limit=2 * limit,
                    include=["documents"],
                ),
            )
        timed(
            f"candidates of a user with {(args.total - args.user) // args.others:,} memories",
            args.calls,
            lambda i: store.candidates("other-0", vectors[i], asked[i], limit, None),
        )
        timed(
            "neighbours (4 seqs)", args.calls, lambda i: store.neighbours(user, [i, i + 2, i + 40, i + 90], vectors[i])
        )
        timed("count_user", args.calls, lambda i: store.count_user(user))
        timed("fetch (20 ids)", args.calls, lambda i: store.fetch(mine.get(limit=20, offset=i, include=[])["ids"]))
        if not args.keep:
            store.delete_col()
    finally:
        if server is not None:
            server.close()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
