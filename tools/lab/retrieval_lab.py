"""Ranking experiments on LoCoMo, in process: ingest once into the default engine, then score variants.

    python -m tools.lab.retrieval_lab [--data FILE] [--variants NAME,...] [--store edge|chroma]

The protocol is `tools.bench.locomo`'s (one user per conversation, one memory per turn, limit 10,
categories 1-4), run on `shared.search.hybrid.HybridSearcher` with the weights or pool of each variant, so
figures here and in `python -m tools.bench locomo` (which goes through HTTP) are comparable. It
exists to choose the ranking's constants; none of them may be specific to a conversation.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

from tools.bench.locomo import SEARCH_LIMIT, Scores, load_locomo
from tools.harness.models import DEFAULT_LOCOMO, local_model_path

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "dense": {"mode": "dense"},
    "no-context": {"weights": {"context": 0.0}},
    "sources-100": {"sources": 100},
    "no-boosts": {"weights": {"speaker": 0.0, "date": 0.0}},
    "keyword-0.3": {"weights": {"semantic": 0.7, "keyword": 0.3}},
    "keyword-0.5": {"weights": {"semantic": 0.5, "keyword": 0.5}},
    "context-0.2": {"weights": {"context": 0.2}},
    "context-0.4": {"weights": {"context": 0.4}},
    "context-0.25": {"weights": {"context": 0.25}},
    "speaker-0.15": {"weights": {"speaker": 0.15}},
    "date-0.15": {"weights": {"date": 0.15}},
    "semantic-0.5": {"weights": {"semantic": 0.5}},
    "best-scale": {"keyword_scale": "best"},
    "no-named": {"named": False},
    "pool-50": {"pool": 50},
    "pool-60": {"pool": 60},
    "pool-200": {"pool": 200},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_LOCOMO))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--store", choices=["edge", "chroma"], default="edge", help="the engine (default edge)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        return _run(args, stack)


def _run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    conversations = load_locomo(__import__("pathlib").Path(args.data))
    local_model_path()  # the model is there (LOCAL_EMBEDDING_MODEL_PATH, else the installed default)
    from shared import factory
    from shared.contract import MemoryInput
    from shared.search import hybrid as search_module
    from shared.settings import Settings

    data = tempfile.mkdtemp(prefix="lab-")
    store_settings: dict[str, Any] = {}
    if args.store == "chroma":
        from tools.harness.chroma_server import ChromaServer

        server = stack.enter_context(ChromaServer())
        store_settings = {"vector_store": "chroma", "chroma_host": server.host, "chroma_port": server.port}
    settings = Settings(data_dir=data, graph_store="none", llm_provider="none", **store_settings)
    service = factory.build_memory_service(settings)
    started = time.perf_counter()
    for conversation in conversations:
        turns = conversation.turns
        for start in range(0, len(turns), 100):
            chunk = turns[start : start + 100]
            service.add_memories(
                conversation.sample_id, [MemoryInput(content=t.content, metadata=t.metadata) for t in chunk]
            )
    print(
        f"ingested {sum(len(c.turns) for c in conversations)} turns in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    searcher = service.searcher
    assert searcher is not None
    if os.environ.get("LAB_COVERAGE"):
        _coverage(service, conversations)
    print(f"{'variant':<14} {'R@5':>6} {'R@10':>6} {'sR@10':>6} {'ms':>6}")
    for name in args.variants.split(","):
        variant = VARIANTS[name]
        searcher.weights = replace(search_module.DEFAULT_WEIGHTS, **variant.get("weights", {}))
        searcher.mode = variant.get("mode", "hybrid")
        searcher.keyword_scale = variant.get("keyword_scale", "ceiling")
        searcher.named_candidates = variant.get("named", True)
        saved = search_module.MIN_POOL, search_module.POOL_PER_RESULT
        if "pool" in variant:
            search_module.MIN_POOL, search_module.POOL_PER_RESULT = variant["pool"], 1
        saved_sources = search_module.MIN_CONTEXT_SOURCES
        search_module.MIN_CONTEXT_SOURCES = variant.get("sources", saved_sources)
        scores, times = Scores(), []
        for conversation in conversations:
            for question in conversation.questions:
                began = time.perf_counter()
                found = searcher.search(conversation.sample_id, question.question, SEARCH_LIMIT, None, None)
                times.append((time.perf_counter() - began) * 1000)
                scores.add(question, [r.metadata.get("dia_id") for r in found], conversation.session_of)
        search_module.MIN_POOL, search_module.POOL_PER_RESULT = saved
        search_module.MIN_CONTEXT_SOURCES = saved_sources
        summary = scores.summary()
        print(
            f"{name:<14} {summary['turn_recall@5']:>6.3f} {summary['turn_recall@10']:>6.3f} "
            f"{summary['session_recall@10']:>6.3f} "
            f"{statistics.median(times):>6.1f}",
            flush=True,
        )
    service.close()
    return 0


def _coverage(service: Any, conversations: Any) -> None:
    """How often the gold turns are among the engine's candidates (or their fetched neighbours)."""
    from shared.search import hybrid as search_module

    store, embedder = service.store, service.embedder
    held = total = in_top = 0
    for conversation in conversations:
        for question in conversation.questions:
            vector = embedder.embed(question.question, "search")
            found = store.candidates(conversation.sample_id, vector, question.question, 100, None)
            dia = {c.payload.get("dia_id") for c in found.items}
            scored = search_module.own_scores(
                found.items,
                search_module.Query.parse(question.question),
                search_module.DEFAULT_WEIGHTS,
                found.keyword_ceiling,
            )
            top = {s.candidate.payload.get("dia_id") for s in sorted(scored, key=lambda s: -s.own)[:30]}
            for gold in question.gold:
                total += 1
                held += gold in dia
                in_top += gold in top
    print(f"gold turns among candidates: {held / total:.3f}; among the 30 best by own score: {in_top / total:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
