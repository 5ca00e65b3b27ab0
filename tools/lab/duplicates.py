"""The near-duplicate cosine of an embedding model, measured (shared/memory/dedupe.py's `THRESHOLDS`).

    python -m tools.lab.duplicates [--model NAME] [--pairs FILE] [--data LOCOMO_FILE] [--json]
    python -m tools.lab.duplicates --cost 10000    # what the check costs the embedded engine

Two sources, embedded with the configured embedder (LOCAL_EMBEDDING_MODEL etc., or `--model` for a local one):

- the labelled pairs of tests/data/duplicate_pairs.json (English and Chinese): restatements of one fact
  (duplicates) and related but different facts (likes tea / likes coffee, lives / lived in Paris, another
  person, a negation), which must both stay;
- LoCoMo dev: within each conversation (one user), every turn's nearest other turn of a different
  normalized text. Distinct turns are distinct memories: none may be merged.

The threshold is the lowest multiple of 0.005 above every cosine that must not merge (the labelled
distinct pairs and the LoCoMo nearest neighbours); the report gives, per language, how many labelled
duplicates it still catches, and the LoCoMo turns whose normalized text repeats (those the exact check
merges whatever the threshold), with how many of them a LoCoMo question names as evidence.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from shared.query.sameness import normalize, numbers
from tools.bench.locomo import load_locomo
from tools.harness.models import DEFAULT_LOCOMO

PAIRS = Path(__file__).resolve().parents[2] / "tests" / "data" / "duplicate_pairs.json"
STEP = 0.005
BLIND = 0.9999  # a cosine this close to 1 between different facts: the model sees one text
GRID = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


def _units(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.where(norms > 0, norms, 1.0))


def labelled(embedder: Any, path: Path) -> list[dict[str, Any]]:
    """Each pair with its cosine (pairs whose normalized texts are equal are the exact check's, left out)."""
    pairs = [p for p in json.loads(path.read_text(encoding="utf-8"))["pairs"] if normalize(p["a"]) != normalize(p["b"])]
    a = _units(embedder.embed_batch([p["a"] for p in pairs], "add"))
    b = _units(embedder.embed_batch([p["b"] for p in pairs], "add"))
    return [{**p, "cosine": float(np.dot(x, y))} for p, x, y in zip(pairs, a, b, strict=True)]


def locomo(embedder: Any, path: Path) -> dict[str, Any]:
    """Per conversation: the nearest other distinct turn of each turn with the same numbers (others are
    never near duplicates: `dedupe.Near.applies`), and the turns whose normalized text repeats."""
    nearest: list[tuple[float, str, str]] = []
    repeated = gold_repeated = turns = 0
    for conversation in load_locomo(path):
        gold = {dia for question in conversation.questions for dia in question.gold}
        groups: dict[str, list[Any]] = defaultdict(list)
        for turn in conversation.turns:
            groups[normalize(turn.content)].append(turn)
        turns += len(conversation.turns)
        for group in groups.values():
            repeated += len(group) - 1  # all but the first would be merged into it
            gold_repeated += sum(1 for turn in group[1:] if turn.dia_id in gold)
        texts = [group[0].content for group in groups.values()]
        units = _units(embedder.embed_batch(texts, "add"))
        cosines = units @ units.T
        np.fill_diagonal(cosines, -1.0)
        counted = [numbers(text) for text in texts]
        for i, mine in enumerate(counted):
            for j, theirs in enumerate(counted):
                if mine != theirs:
                    cosines[i, j] = -1.0
        best = cosines.argmax(axis=1)
        nearest.extend((float(cosines[i, j]), texts[i], texts[j]) for i, j in enumerate(best))
    nearest.sort(reverse=True)
    return {"turns": turns, "repeated": repeated, "gold_repeated": gold_repeated, "nearest": nearest}


def choose(distinct: list[float]) -> float:
    """The lowest multiple of STEP above every cosine that must not merge (1.0 at most)."""
    top = max(distinct, default=0.0)
    return min(1.0, round((math.floor(top / STEP) + 1) * STEP, 3))


def report(pairs: list[dict[str, Any]], corpus: dict[str, Any], model: str) -> dict[str, Any]:
    # A model that gives two different Chinese facts one vector cannot judge CJK text: its near check
    # leaves such text out (dedupe.Near.cjk), and so does the threshold's choice.
    cjk = not any(p["lang"] == "zh" and not p["duplicate"] and p["cosine"] >= BLIND for p in pairs)
    # What the check never merges whatever the cosine: texts with other numbers, and (for a CJK-blind
    # model) Chinese text; those pairs neither bound the threshold nor are caught by it.
    judged = [p for p in pairs if numbers(p["a"]) == numbers(p["b"]) and (cjk or p["lang"] != "zh")]
    distinct = [p["cosine"] for p in judged if not p["duplicate"]] + [c for c, _, _ in corpus["nearest"]]
    threshold = choose(distinct)
    languages: dict[str, Any] = {}
    for lang in sorted({p["lang"] for p in pairs}):
        dup = sorted(p["cosine"] for p in pairs if p["lang"] == lang and p["duplicate"])
        other = sorted(p["cosine"] for p in pairs if p["lang"] == lang and not p["duplicate"])
        caught = [p["cosine"] for p in judged if p["lang"] == lang and p["duplicate"] and p["cosine"] >= threshold]
        languages[lang] = {
            "duplicates": len(dup),
            "duplicate_cosine_min_median_max": [round(dup[0], 4), round(float(np.median(dup)), 4), round(dup[-1], 4)],
            "distinct": len(other),
            "distinct_cosine_min_median_max": [
                round(other[0], 4),
                round(float(np.median(other)), 4),
                round(other[-1], 4),
            ],
            "caught_at_threshold": len(caught),
            "hardest_distinct": max((p for p in pairs if p["lang"] == lang and not p["duplicate"]), key=_cos),
            "hardest_distinct_judged": max(
                (p for p in judged if p["lang"] == lang and not p["duplicate"]), key=_cos, default=None
            ),
        }
    grid = []
    for t in GRID:
        grid.append(
            {
                "threshold": t,
                "labelled_duplicates_caught": sum(1 for p in judged if p["duplicate"] and p["cosine"] >= t),
                "labelled_distinct_merged": sum(1 for p in judged if not p["duplicate"] and p["cosine"] >= t),
                "locomo_turns_merged": sum(1 for c, _, _ in corpus["nearest"] if c >= t),
            }
        )
    return {
        "model": model,
        "threshold": threshold,
        "cjk": cjk,
        "languages": languages,
        "locomo": {
            "turns": corpus["turns"],
            "distinct_texts": len(corpus["nearest"]),
            "nearest_cosine_max": round(corpus["nearest"][0][0], 4) if corpus["nearest"] else None,
            "nearest_cosine_p99": round(float(np.percentile([c for c, _, _ in corpus["nearest"]], 99)), 4),
            "closest_pairs": [[round(c, 4), a, b] for c, a, b in corpus["nearest"][:10:2]],
            "repeated_texts": corpus["repeated"],
            "repeated_gold_turns": corpus["gold_repeated"],
        },
        "grid": grid,
    }


def _cos(pair: dict[str, Any]) -> float:
    return float(pair["cosine"])


def cost(embedder: Any, path: Path, size: int) -> dict[str, Any]:
    """The check's engine call (`twins`) on Qdrant Edge for one user holding `size` memories (LoCoMo
    turns, repeated with a suffix and a jittered vector past the corpus), timed for a batch of 1 and of
    100, beside one search's `candidates` call: p50 in ms."""
    import statistics
    import tempfile
    import time
    import uuid

    from shared.query.sameness import norm_key, scope_tag
    from shared.stores.vector.edge import EdgeVectorStore

    turns = [turn.content for conversation in load_locomo(path) for turn in conversation.turns]
    base = _units(embedder.embed_batch(turns, "add"))
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as folder:
        store = EdgeVectorStore(Path(folder) / "shard", "cost", base.shape[1])
        try:
            for start in range(0, size, 500):
                rows = range(start, min(size, start + 500))
                texts = [f"{turns[i % len(turns)]} #{i // len(turns)}" for i in rows]
                vectors = [base[i % len(turns)] + rng.normal(0, 0.01, base.shape[1]) * (i >= len(turns)) for i in rows]
                payloads = [{"user_id": "u", "data": t, "created_at": "2024-05-01T00:00:00+00:00"} for t in texts]
                store.insert([v.tolist() for v in vectors], payloads, [str(uuid.uuid4()) for _ in rows])
            plain = scope_tag(None, None)

            def timed(call: Any, rounds: int) -> float:
                call()
                times = []
                for _ in range(rounds):
                    began = time.perf_counter()
                    call()
                    times.append((time.perf_counter() - began) * 1000)
                return round(statistics.median(times), 2)

            one = (turns[:1], base[:1].tolist())
            hundred = (turns[100:200], base[100:200].tolist())
            return {
                "memories": size,
                "twins_1_ms": timed(lambda: store.twins("u", plain, [norm_key(t) for t in one[0]], one[1]), 100),
                "twins_100_ms": timed(
                    lambda: store.twins("u", plain, [norm_key(t) for t in hundred[0]], hundred[1]), 20
                ),
                "candidates_ms": timed(lambda: store.candidates("u", one[1][0], one[0][0], 30, None), 100),
            }
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a local embedding model (LOCAL_EMBEDDING_MODEL), e.g. multilingual")
    parser.add_argument("--pairs", default=str(PAIRS), help="the labelled pairs (default tests/data/...)")
    parser.add_argument("--data", default=str(DEFAULT_LOCOMO), help="LoCoMo data (default the team copy)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--cost", type=int, metavar="N", help="time the check on the embedded engine at N memories")
    args = parser.parse_args(argv)
    if args.model:
        os.environ["EMBEDDING_PROVIDER"] = "local"
        os.environ["LOCAL_EMBEDDING_MODEL"] = args.model
    from shared.ai.backends import build_embedder
    from shared.settings import Settings

    settings = Settings()
    embedder = build_embedder(settings)
    if args.cost:
        print(json.dumps(cost(embedder, Path(args.data), args.cost)))
        return 0
    pairs, corpus = labelled(embedder, Path(args.pairs)), locomo(embedder, Path(args.data))
    result = report(pairs, corpus, settings.embedding_model_id)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        _print(result)
    return 0


def _print(result: dict[str, Any]) -> None:
    print(f"model: {result['model']}")
    print(f"near-duplicate threshold (lowest {STEP} step above every pair that must stay apart): {result['threshold']}")
    if not result["cjk"]:
        print("  the model gives different Chinese facts one vector: CJK text gets the exact check only (Near.cjk)")
    for lang, row in result["languages"].items():
        hard, judged = row["hardest_distinct"], row["hardest_distinct_judged"]
        print(
            f"  {lang}: duplicates {row['duplicates']} cosine min/median/max {row['duplicate_cosine_min_median_max']}, "
            f"caught at the threshold {row['caught_at_threshold']}; distinct {row['distinct']} cosine "
            f"min/median/max {row['distinct_cosine_min_median_max']}, hardest: {hard['a']!r} / {hard['b']!r} "
            f"{hard['cosine']:.4f}"
        )
        if judged is not None and judged is not hard:
            pair = f"{judged['a']!r} / {judged['b']!r} {judged['cosine']:.4f}"
            print(f"      hardest the check judges (same numbers): {pair}")
    lo = result["locomo"]
    print(
        f"LoCoMo: {lo['turns']} turns, {lo['distinct_texts']} distinct normalized texts; nearest other turn cosine "
        f"max {lo['nearest_cosine_max']}, p99 {lo['nearest_cosine_p99']}"
    )
    for cosine, a, b in lo["closest_pairs"]:
        print(f"    {cosine:.4f}  {a[:70]!r} / {b[:70]!r}")
    print(
        f"  turns whose normalized text repeats an earlier one (merged by the exact check): {lo['repeated_texts']}, "
        f"of them named as evidence by a question: {lo['repeated_gold_turns']}"
    )
    print("(below: pairs the check judges, i.e. with the same numbers and, for a CJK-blind model, no Chinese)")
    print("threshold  labelled duplicates caught  labelled distinct merged  LoCoMo turns merged")
    for row in result["grid"]:
        print(
            f"  {row['threshold']:.3f}  {row['labelled_duplicates_caught']:>10}  "
            f"{row['labelled_distinct_merged']:>24}  {row['locomo_turns_merged']:>19}"
        )


if __name__ == "__main__":
    sys.exit(main())
