"""Offline retrieval lab: rank LoCoMo dialog turns in memory and score them with the bench protocol.

Everything runs in NumPy on vectors embedded once (cached under /tmp), so a ranking idea is
judged in seconds. The protocol matches tools/bench: one user per conversation, one memory per
dialog turn ("{speaker}: {text}" plus " [shares {blip_caption}]"), questions of categories 1-4
whose evidence names at least one existing dia_id, turn recall@k = |gold ∩ top k| / |gold|.

The product's own scoring code (shared/search.py) is what the "hybrid" rows evaluate: the lab
feeds it the same top-N dense candidates the vector store would return, so a lab number is the
product's number (up to ANN approximation in the store).

    .venv/bin/python -m tools.retrieval_lab                 # the summary table
    .venv/bin/python -m tools.retrieval_lab --detail        # per category and per conversation
    .venv/bin/python -m tools.retrieval_lab --sweep         # parameter sensitivity (leave-one-out)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-onnx"
CACHE_DIR = Path("/tmp/retrieval_lab")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


@dataclass
class Turn:
    dia_id: str
    speaker: str
    content: str
    session: int
    session_date: str
    seq: int  # position in the conversation, what a batch-add order would give


@dataclass
class Question:
    text: str
    category: int
    gold: set[str]


@dataclass
class Conversation:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    query_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


def memory_content(turn: dict[str, Any]) -> str:
    content = f"{turn['speaker']}: {turn['text']}"
    if turn.get("blip_caption"):
        content += f" [shares {turn['blip_caption']}]"
    return content


def load(path: Path) -> list[Conversation]:
    conversations = []
    for sample in json.loads(path.read_text()):
        conv = sample["conversation"]
        turns: list[Turn] = []
        sessions = sorted(
            int(m.group(1)) for key in conv if (m := re.fullmatch(r"session_(\d+)", key)) and conv[key]
        )
        for n in sessions:
            for turn in conv[f"session_{n}"]:
                turns.append(
                    Turn(turn["dia_id"], turn["speaker"], memory_content(turn), n, conv[f"session_{n}_date_time"], 0)
                )
        for i, turn_ in enumerate(turns):
            turn_.seq = i
        known = {t.dia_id for t in turns}
        questions = []
        for qa in sample["qa"]:
            if qa.get("category") not in CATEGORIES:
                continue
            gold = {e for ev in qa.get("evidence") or [] for e in re.split(r"[;,\s]+", str(ev)) if e in known}
            if gold:
                questions.append(Question(str(qa["question"]), int(qa["category"]), gold))
        conversations.append(Conversation(sample["sample_id"], turns, questions))
    return conversations


def embed_all(conversations: list[Conversation], model_path: Path) -> None:
    """Embeds every turn and question once; vectors are cached by content hash."""
    from shared.embeddings import LocalEmbedder

    texts = [t.content for c in conversations for t in c.turns]
    queries = [q.text for c in conversations for q in c.questions]
    key = hashlib.sha256("\n".join([str(model_path), *texts, "\x00", *queries]).encode()).hexdigest()[:16]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = CACHE_DIR / f"vectors-{key}.npz"
    if cached.exists():
        data = np.load(cached)
        doc_vectors, query_vectors = data["docs"], data["queries"]
    else:
        embedder = LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", model_path, 384)
        started = time.perf_counter()
        doc_vectors = np.asarray(embedder.embed_batch(texts), dtype=np.float32)
        query_vectors = np.asarray(embedder.embed_batch(queries, "search"), dtype=np.float32)
        print(f"embedded {len(texts)} turns and {len(queries)} questions in {time.perf_counter() - started:.1f}s")
        np.savez(cached, docs=doc_vectors, queries=query_vectors)
    d = q = 0
    for c in conversations:
        c.vectors = doc_vectors[d : d + len(c.turns)]
        c.query_vectors = query_vectors[q : q + len(c.questions)]
        d += len(c.turns)
        q += len(c.questions)


# --- evaluation ------------------------------------------------------------------------------
# A ranker gets the conversation and the question index and returns turn indices, best first.
Ranker = Callable[[Conversation, int], Sequence[int]]


@dataclass
class Result:
    name: str
    per_question: list[tuple[str, int, float, float]]  # (sample_id, category, recall@5, recall@10)

    def mean(self, k: int, where: Callable[[tuple[str, int, float, float]], bool] = lambda _: True) -> float:
        values = [(r[2] if k == 5 else r[3]) for r in self.per_question if where(r)]
        return float(np.mean(values)) if values else float("nan")


def evaluate(name: str, conversations: list[Conversation], ranker: Ranker) -> Result:
    rows = []
    for conv in conversations:
        ids = [t.dia_id for t in conv.turns]
        for qi, question in enumerate(conv.questions):
            ranked = [ids[i] for i in list(ranker(conv, qi))[:10]]
            r5 = len(question.gold & set(ranked[:5])) / len(question.gold)
            r10 = len(question.gold & set(ranked[:10])) / len(question.gold)
            rows.append((conv.sample_id, question.category, r5, r10))
    return Result(name, rows)


def top(scores: np.ndarray, k: int = 10) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


# --- baselines -------------------------------------------------------------------------------
def dense_ranker(conv: Conversation, qi: int) -> Sequence[int]:
    return top(conv.vectors @ conv.query_vectors[qi])


_SIMPLE_TOKEN = re.compile(r"\w+")


class PlainBM25:
    """Textbook Okapi BM25 (k1=1.5, b=0.75, Lucene idf), lowercase word tokens: the anchor's BM25."""

    def __init__(self, docs: list[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.tokens = [_SIMPLE_TOKEN.findall(d.lower()) for d in docs]
        self.lengths = np.array([len(t) for t in self.tokens], dtype=np.float64)
        self.avg = float(self.lengths.mean())
        self.k1, self.b = k1, b
        self.df: dict[str, int] = {}
        for tokens in self.tokens:
            for term in set(tokens):
                self.df[term] = self.df.get(term, 0) + 1
        self.tf = [_counts(t) for t in self.tokens]

    def scores(self, query: str) -> np.ndarray:
        n = len(self.tokens)
        out = np.zeros(n)
        for term in set(_SIMPLE_TOKEN.findall(query.lower())):
            df = self.df.get(term)
            if not df:
                continue
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            for i, tf in enumerate(self.tf):
                f = tf.get(term)
                if f:
                    out[i] += idf * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg))
        return out


def _counts(tokens: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    return counts


def rrf(rankings: list[Sequence[int]], k: int = 60) -> list[int]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank + 1)
    return sorted(fused, key=lambda d: -fused[d])


# --- report ----------------------------------------------------------------------------------
def table(results: list[Result], conversations: list[Conversation], detail: bool) -> str:
    lines = ["| ranking | R@5 | R@10 |" + ("".join(f" {CATEGORIES[c]} @10 |" for c in CATEGORIES) if detail else "")]
    lines.append("|---" * (3 + (len(CATEGORIES) if detail else 0)) + "|")
    for r in results:
        row = f"| {r.name} | {r.mean(5):.3f} | {r.mean(10):.3f} |"
        if detail:
            row += "".join(f" {r.mean(10, lambda x, c=c: x[1] == c):.3f} |" for c in CATEGORIES)
        lines.append(row)
    if detail:
        lines.append("")
        lines.append("| ranking | " + " | ".join(c.sample_id for c in conversations) + " | stdev |")
        lines.append("|---" * (len(conversations) + 2) + "|")
        for r in results:
            values = [r.mean(10, lambda x, s=c.sample_id: x[0] == s) for c in conversations]
            lines.append(
                f"| {r.name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {statistics.stdev(values):.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--detail", action="store_true")
    args = parser.parse_args()

    conversations = load(args.data)
    embed_all(conversations, args.model)
    print(f"{sum(len(c.questions) for c in conversations)} questions, {sum(len(c.turns) for c in conversations)} turns")

    bm25 = {c.sample_id: PlainBM25([t.content for t in c.turns]) for c in conversations}

    def bm25_ranker(conv: Conversation, qi: int) -> Sequence[int]:
        return top(bm25[conv.sample_id].scores(conv.questions[qi].text))

    def rrf_ranker(conv: Conversation, qi: int) -> Sequence[int]:
        dense = top(conv.vectors @ conv.query_vectors[qi], 60)
        keyword = top(bm25[conv.sample_id].scores(conv.questions[qi].text), 60)
        return rrf([list(dense), list(keyword)])

    results = [
        evaluate("dense", conversations, dense_ranker),
        evaluate("BM25", conversations, bm25_ranker),
        evaluate("RRF(dense, BM25)", conversations, rrf_ranker),
    ]
    print(table(results, conversations, args.detail))


if __name__ == "__main__":
    main()
