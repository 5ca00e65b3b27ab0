"""Chinese/English retrieval of each local embedding model: `python -m tools.bench zhen`.

The set is `tests/data/zh_en_retrieval.json` (written for this project): three users, ten memories
each (half Chinese, half English), 31 questions in both languages with the memory that answers
each. Every model gets a fresh embedded store in process, the memories are added through the
memory service, and each question is searched in the user's memories (limit 5) with the hybrid
search (the default) and with the dense search alone. Reported: top-1 (the answer first) and R@5,
overall and by language pair (question -> memory), so cross-lingual matching shows apart from the
keyword path.

Models: `int8` (the default: the packaged all-MiniLM-L6-v2), `fp32` (the same model's fp32 export
in the team folder, `../shared/models`, when it is there), `multilingual` (USE multilingual v3).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.ai.local_models import MINILM
from tools.bench.common import BenchError, format_table
from tools.harness.models import REPO_ROOT, SHARED_MODEL

DEFAULT_DATA = REPO_ROOT / "tests" / "data" / "zh_en_retrieval.json"
MODELS = ("int8", "fp32", "multilingual")
MODES = ("hybrid", "dense")
LIMIT = 5
PAIRS = ("zh->zh", "en->en", "zh->en", "en->zh")


def model_settings(model: str) -> dict[str, Any]:
    """The Settings fields that select `model`."""
    if model == "int8":
        return {"local_embedding_model": MINILM, "local_embedding_model_path": None}
    if model == "fp32":
        if not (SHARED_MODEL / "model.onnx").is_file():
            raise BenchError(f"the fp32 model is not at {SHARED_MODEL}: leave fp32 out of --models")
        return {"local_embedding_model": MINILM, "local_embedding_model_path": SHARED_MODEL}
    if model == "multilingual":
        return {"local_embedding_model": "multilingual", "local_embedding_model_path": None}
    raise BenchError(f"unknown model {model!r}: one of {', '.join(MODELS)}")


def run_zhen(models: Sequence[str], data_path: Path = DEFAULT_DATA) -> dict[str, Any]:
    """{"models": {model: {mode: {"top1", "recall@5", "by_pair": {pair: {...}}, "questions"}}}}."""
    data = json.loads(Path(data_path).read_text(encoding="utf-8"))
    langs = {m["id"]: m["lang"] for memories in data["memories"].values() for m in memories}
    result: dict[str, Any] = {"benchmark": "zhen", "data": str(data_path), "limit": LIMIT, "models": {}}
    for model in models:
        result["models"][model] = _run_model(model, data, langs)
    return result


def _run_model(model: str, data: dict[str, Any], langs: dict[str, str]) -> dict[str, Any]:
    from shared import factory
    from shared.contract import MemoryInput
    from shared.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix=f"zhen-{model}-"))
    try:
        settings = Settings(
            data_dir=folder,
            graph_store="none",
            llm_provider="none",
            state_store="local",
            embedding_provider="local",
            local_embedding_threads=1,
            **model_settings(model),
        )
        service = factory.build_memory_service(settings)
        try:
            for user, memories in data["memories"].items():
                inputs = [MemoryInput(content=m["text"], metadata={"ref": m["id"]}) for m in memories]
                service.add_memories(user, inputs)
            searcher = service.searcher
            assert searcher is not None
            out: dict[str, Any] = {}
            for mode in MODES:
                searcher.mode = mode
                began = time.perf_counter()
                rows = []
                for question in data["questions"]:
                    found = searcher.search(question["user"], question["question"], LIMIT, None, None)
                    refs = [r.metadata.get("ref") for r in found]
                    pair = f"{question['lang']}->{langs[question['gold']]}"
                    rows.append((pair, refs[:1] == [question["gold"]], question["gold"] in refs))
                out[mode] = {
                    **_scores(rows),
                    "by_pair": {pair: _scores([r for r in rows if r[0] == pair]) for pair in PAIRS},
                    "ms_per_question": round((time.perf_counter() - began) * 1000 / len(rows), 1),
                }
            return out
        finally:
            service.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _scores(rows: Sequence[tuple[str, bool, bool]]) -> dict[str, Any]:
    n = len(rows)
    return {
        "questions": n,
        "top1": round(sum(r[1] for r in rows) / n, 3) if n else None,
        "recall@5": round(sum(r[2] for r in rows) / n, 3) if n else None,
    }


def zhen_table(result: dict[str, Any]) -> str:
    headers = ["model", "search", "top-1", "R@5", *[f"{p} top-1/R@5" for p in PAIRS]]
    rows = []
    for model, modes in result["models"].items():
        for mode, scores in modes.items():
            pairs = [f"{s['top1']:.2f}/{s['recall@5']:.2f}" for s in (scores["by_pair"][p] for p in PAIRS)]
            rows.append([model, mode, f"{scores['top1']:.3f}", f"{scores['recall@5']:.3f}", *pairs])
    counts = ", ".join(f"{p} {n}" for p, n in _pair_counts(result).items())
    return format_table(headers, rows, title=f"zh/en retrieval, limit {LIMIT} (questions: {counts})")


def _pair_counts(result: dict[str, Any]) -> dict[str, int]:
    for modes in result["models"].values():
        for scores in modes.values():
            return {pair: int(s["questions"]) for pair, s in scores["by_pair"].items()}
    return {}


def main_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    for model in models:
        if model not in MODELS:
            raise BenchError(f"unknown model {model!r}: one of {', '.join(MODELS)}")
    if not (SHARED_MODEL / "model.onnx").is_file() and "fp32" in models and text == ",".join(MODELS):
        print(f"fp32 left out: no model at {SHARED_MODEL}", file=sys.stderr)
        models.remove("fp32")
    return models
