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
    .venv/bin/python -m tools.retrieval_lab --latency chroma   # in-process search timing, hybrid vs plain
                                                               # (qdrant = embedded; chroma starts a server)

Nothing here is product code: the data stays in ../shared (never copied into the repo), and no
product setting or weight reads anything from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-onnx"
CACHE_DIR = Path(tempfile.gettempdir()) / "retrieval_lab"
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
        sessions = sorted(int(m.group(1)) for key in conv if (m := re.fullmatch(r"session_(\d+)", key)) and conv[key])
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
Ranking = Sequence[int] | np.ndarray
Ranker = Callable[[Conversation, int], Ranking]


@dataclass
class Result:
    name: str
    per_question: list[tuple[str, int, float, float]]  # (sample_id, category, recall@5, recall@10)

    def mean(self, k: int, category: int | None = None, samples: Sequence[str] | None = None) -> float:
        """Mean recall@k, over one category and/or some conversations if given."""
        values = [
            (r[2] if k == 5 else r[3])
            for r in self.per_question
            if (category is None or r[1] == category) and (samples is None or r[0] in samples)
        ]
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
def dense_ranker(conv: Conversation, qi: int) -> Ranking:
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
                    out[i] += (
                        idf * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg))
                    )
        return out


def _counts(tokens: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    return counts


def rrf(rankings: list[Ranking], k: int = 60) -> list[int]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank + 1)
    return sorted(fused, key=lambda d: -fused[d])


# --- the product ranking ------------------------------------------------------------------------
def payloads(conv: Conversation, batching: str = "100", with_seq: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """The stored payloads, as MemoryService.add_memories writes them.

    batching="100": batch-adds of 100 turns, as tools/bench does; "session": one batch per
    session; with_seq=False: the payload without the requested `seq` field (what is written today).
    """
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    batch_of = [t.session if batching == "session" else t.seq // int(batching) for t in conv.turns]
    batch_start = 0
    for i, turn in enumerate(conv.turns):
        if i and batch_of[i] != batch_of[i - 1]:
            batch_start = i
        created = (start + timedelta(seconds=2 * batch_of[i])).isoformat()
        payload: dict[str, Any] = {
            "dia_id": turn.dia_id,
            "session": turn.session,
            "session_date": turn.session_date,
            "user_id": conv.sample_id,
            "role": "user",
            "data": turn.content,
            "hash": hashlib.md5(turn.content.encode()).hexdigest(),
            "created_at": created,
            "updated_at": created,
        }
        if with_seq:
            payload["seq"] = i - batch_start
        rows.append((f"{conv.sample_id}-{i}", payload))
    return rows


def product_ranker(
    conversations: list[Conversation],
    weights: Any = None,
    batching: str = "100",
    with_seq: bool = True,
    pool: int = 60,
) -> Ranker:
    """shared.search.rank on an index of the simulated payloads, fed the top-`pool` dense candidates."""
    from shared.search import DEFAULT_WEIGHTS, Query, UserIndex, rank

    chosen = weights or DEFAULT_WEIGHTS
    indexes = {c.sample_id: UserIndex(c.sample_id, payloads(c, batching, with_seq), chosen) for c in conversations}
    parsed = {(c.sample_id, qi): Query.parse(q.text) for c in conversations for qi, q in enumerate(c.questions)}

    def ranker(conv: Conversation, qi: int) -> Ranking:
        index = indexes[conv.sample_id]
        similarities = conv.vectors @ conv.query_vectors[qi]
        candidates = top(similarities, pool)  # index positions equal turn positions here
        scores = rank(
            index,
            parsed[(conv.sample_id, qi)],
            candidates,
            similarities[candidates].astype(np.float64),
            pool_exhaustive=len(conv.turns) <= pool,
            weights=chosen,
        )
        return top(scores)

    return ranker


# --- report ----------------------------------------------------------------------------------
def table(results: list[Result], conversations: list[Conversation], detail: bool) -> str:
    lines = ["| ranking | R@5 | R@10 |" + ("".join(f" {CATEGORIES[c]} @10 |" for c in CATEGORIES) if detail else "")]
    lines.append("|---" * (3 + (len(CATEGORIES) if detail else 0)) + "|")
    for r in results:
        row = f"| {r.name} | {r.mean(5):.3f} | {r.mean(10):.3f} |"
        if detail:
            row += "".join(f" {r.mean(10, category=c):.3f} |" for c in CATEGORIES)
        lines.append(row)
    if detail:
        lines.append("")
        lines.append("| ranking | " + " | ".join(c.sample_id for c in conversations) + " | stdev |")
        lines.append("|---" * (len(conversations) + 2) + "|")
        for r in results:
            values = [r.mean(10, samples=[c.sample_id]) for c in conversations]
            lines.append(
                f"| {r.name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {statistics.stdev(values):.3f} |"
            )
    return "\n".join(lines)


def sweep(conversations: list[Conversation]) -> str:
    """Leave-one-conversation-out: pick the grid's best weights on five conversations, score the sixth.

    If the held-out numbers stay near the in-sample ones and the picks agree, the weights are a
    property of the method, not of these conversations.
    """
    from dataclasses import replace

    from shared.search import DEFAULT_WEIGHTS

    grid = [
        replace(DEFAULT_WEIGHTS, semantic=1 - kw, keyword=kw, context=ctx, speaker=boost, date=boost)
        for kw in (0.3, 0.4, 0.5)
        for ctx in (0.2, 0.3, 0.4)
        for boost in (0.05, 0.1, 0.2)
    ]
    results = [evaluate(str(i), conversations, product_ranker(conversations, w)) for i, w in enumerate(grid)]
    lines = ["| held out | picked (keyword, context, boost) | held-out R@10 | default R@10 |", "|---|---|---|---|"]
    default = next(i for i, w in enumerate(grid) if w == DEFAULT_WEIGHTS)
    held_out_scores = []
    for conv in conversations:
        others = [c.sample_id for c in conversations if c is not conv]

        def in_sample(r: Result, others: list[str] = others) -> float:
            return r.mean(10, samples=others)

        best = max(range(len(grid)), key=lambda i: in_sample(results[i]))
        w = grid[best]
        held = results[best].mean(10, samples=[conv.sample_id])
        held_out_scores.append((held, len([q for q in conv.questions])))
        lines.append(
            f"| {conv.sample_id} | ({w.keyword}, {w.context}, {w.speaker}) | {held:.3f} | "
            f"{results[default].mean(10, samples=[conv.sample_id]):.3f} |"
        )
    total = sum(n for _, n in held_out_scores)
    pooled = sum(v * n for v, n in held_out_scores) / total
    lines.append(f"| all (question-weighted) | | {pooled:.3f} | {results[default].mean(10):.3f} |")
    spread = sorted(r.mean(10) for r in results)
    lines.append(
        f"\ngrid of {len(grid)}: R@10 from {spread[0]:.3f} to {spread[-1]:.3f}, median {spread[len(spread) // 2]:.3f}"
    )
    return "\n".join(lines)


# --- latency -------------------------------------------------------------------------------------
def build_service(store: str, data_dir: Path, model: Path, chroma_port: int | None, hybrid: bool) -> Any:
    """A MemoryService as a worker builds it, on the chosen store, with or without the hybrid searcher."""
    from shared.backends import build_embedder, build_memory
    from shared.history import build_history_store
    from shared.llm import build_chat_model
    from shared.memory_service import MemoryService
    from shared.search import HybridSearcher
    from shared.settings import Settings

    extra: dict[str, Any] = {"vector_store": store}
    if store == "chroma":
        extra.update(chroma_host="127.0.0.1", chroma_port=chroma_port)
    settings = Settings(data_dir=data_dir, local_embedding_model_path=model, state_store="local", **extra)
    embedder = build_embedder(settings)
    memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings))
    searcher = HybridSearcher(memory, embedder, settings) if hybrid else None
    return MemoryService(memory, embedder, settings, searcher=searcher)


def fill(service: Any, conversations: list[Conversation], users: int, per_user: int, target: int) -> str:
    """`target` memories for one user (LoCoMo turns, repeated) and `per_user` for each other user.

    Vectors are random unit vectors (embedding 50k texts here would take an hour); payloads are
    exactly what MemoryService.add_memories writes, in batches of 500 with `seq`.
    """
    from datetime import UTC, datetime

    rng = np.random.default_rng(7)
    texts = [t.content for c in conversations for t in c.turns]
    store = service.memory.vector_store
    target_user = "latency-user"
    plan = [(target_user, target)] + [(f"other-{u}", per_user) for u in range(users)]
    written = 0
    for user, count in plan:
        for start in range(0, count, 500):
            size = min(500, count - start)
            now = datetime.now(UTC).isoformat()
            vectors = rng.standard_normal((size, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            payloads = []
            for j in range(size):
                text = texts[(start + j + written) % len(texts)]
                payloads.append(
                    {
                        "user_id": user,
                        "role": "user",
                        "data": text,
                        "hash": hashlib.md5(text.encode()).hexdigest(),
                        "created_at": now,
                        "updated_at": now,
                        "text_lemmatized": text,
                        "seq": j,
                    }
                )
            ids = [str(uuid.uuid4()) for _ in range(size)]
            store.insert(vectors=vectors.tolist(), ids=ids, payloads=payloads)
        written += count
    return target_user


def latency(args: argparse.Namespace, conversations: list[Conversation]) -> None:
    import os

    os.environ["MEM0_TELEMETRY"] = "false"  # before mem0 or chromadb is imported
    os.environ["ANONYMIZED_TELEMETRY"] = "False"
    data_dir = Path(tempfile.mkdtemp(prefix="retrieval-lab-"))
    server = None
    port = None
    if args.latency == "chroma":
        from tests.support.chroma_server import ChromaServer

        server = ChromaServer(data_dir / "chroma")
        server.start()
        port = server.port
    try:
        plain = build_service(args.latency, data_dir, args.model, port, hybrid=False)
        started = time.perf_counter()
        user = fill(plain, conversations, users=args.users, per_user=args.per_user, target=args.target)
        print(f"filled {args.target + args.users * args.per_user} memories in {time.perf_counter() - started:.0f}s")
        if args.latency == "qdrant":
            # Embedded Qdrant locks its folder: the hybrid service must share the client.
            from shared.memory_service import MemoryService
            from shared.search import HybridSearcher

            hybrid = MemoryService(
                plain.memory,
                plain.embedder,
                plain.settings,
                HybridSearcher(plain.memory, plain.embedder, plain.settings),
            )
        else:
            hybrid = build_service(args.latency, data_dir, args.model, port, hybrid=True)
        queries = [q.text for c in conversations for q in c.questions][: args.queries]
        started = time.perf_counter()
        assert hybrid.searcher is not None
        index = hybrid.searcher.index_for(user)
        print(f"index build for {index.size} memories: {1000 * (time.perf_counter() - started):.0f} ms")
        started = time.perf_counter()
        rows = hybrid.searcher._read_user(user)
        read = time.perf_counter() - started
        from shared.search import UserIndex

        started = time.perf_counter()
        UserIndex(user, rows)
        analysis = 1000 * (time.perf_counter() - started)
        print(f"  of which: read {1000 * read:.0f} ms, analyse from scratch {analysis:.0f} ms")
        for service in (plain, hybrid):  # warm both paths (model load, first calls)
            for q in queries[:20]:
                service.search_memories(user, q, 10)
        timings: dict[str, list[float]] = {"plain mem0": [], "hybrid": []}
        for q in queries:
            for name, service in (("plain mem0", plain), ("hybrid", hybrid)):
                started = time.perf_counter()
                service.search_memories(user, q, 10)
                timings[name].append(1000 * (time.perf_counter() - started))
        embed = []
        for q in queries[:200]:
            started = time.perf_counter()
            plain.embedder.embed(q, "search")
            embed.append(1000 * (time.perf_counter() - started))
        print(
            f"| {args.latency}: search of 1 user with {args.target} among {args.target + args.users * args.per_user} | "
            "p50 ms | p95 ms | mean ms |"
        )
        print("|---|---|---|---|")
        for name, values in (*timings.items(), ("query embedding alone", embed)):
            print(
                f"| {name} | {np.percentile(values, 50):.1f} | {np.percentile(values, 95):.1f} | "
                f"{np.mean(values):.1f} |"
            )
        overhead = np.mean(timings["hybrid"]) / np.mean(timings["plain mem0"]) - 1
        print(
            f"hybrid overhead over plain mem0: {100 * overhead:+.1f}% (mean), "
            f"{100 * (np.percentile(timings['hybrid'], 95) / np.percentile(timings['plain mem0'], 95) - 1):+.1f}% (p95)"
        )
    finally:
        if server is not None:
            server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--detail", action="store_true", help="per category and per conversation")
    parser.add_argument("--sweep", action="store_true", help="leave-one-conversation-out weight selection")
    parser.add_argument("--latency", choices=["qdrant", "chroma"], help="time search in-process on a filled store")
    parser.add_argument("--target", type=int, default=10_000, help="memories of the searched user (--latency)")
    parser.add_argument("--users", type=int, default=40, help="other users (--latency)")
    parser.add_argument("--per-user", type=int, default=1_000, help="memories per other user (--latency)")
    parser.add_argument("--queries", type=int, default=400, help="queries timed (--latency)")
    args = parser.parse_args()

    from dataclasses import replace

    from shared.search import DEFAULT_WEIGHTS, UserIndex

    conversations = load(args.data)
    embed_all(conversations, args.model)
    print(f"{sum(len(c.questions) for c in conversations)} questions, {sum(len(c.turns) for c in conversations)} turns")
    if args.latency:
        latency(args, conversations)
        return

    plain = {c.sample_id: PlainBM25([t.content for t in c.turns]) for c in conversations}
    ours = {c.sample_id: UserIndex(c.sample_id, payloads(c)) for c in conversations}

    def bm25_ranker(conv: Conversation, qi: int) -> Ranking:
        return top(plain[conv.sample_id].scores(conv.questions[qi].text))

    def our_bm25_ranker(conv: Conversation, qi: int) -> Ranking:
        from shared.search import tokenize

        return top(ours[conv.sample_id].keyword_scores(tokenize(conv.questions[qi].text))[0])

    def rrf_ranker(conv: Conversation, qi: int) -> Ranking:
        dense = top(conv.vectors @ conv.query_vectors[qi], 60)
        keyword = top(plain[conv.sample_id].scores(conv.questions[qi].text), 60)
        return rrf([list(dense), list(keyword)])

    w = DEFAULT_WEIGHTS
    results = [
        evaluate("dense (plain mem0 offline)", conversations, dense_ranker),
        evaluate("BM25, plain word tokens", conversations, bm25_ranker),
        evaluate("RRF(dense, plain BM25)", conversations, rrf_ranker),
        evaluate("our BM25 alone (stop words, stems)", conversations, our_bm25_ranker),
        evaluate(
            "hybrid: 0.6 dense + 0.4 BM25 only",
            conversations,
            product_ranker(conversations, replace(w, context=0, speaker=0, date=0)),
        ),
        evaluate("hybrid without context", conversations, product_ranker(conversations, replace(w, context=0))),
        evaluate("hybrid without speaker", conversations, product_ranker(conversations, replace(w, speaker=0))),
        evaluate("hybrid without date", conversations, product_ranker(conversations, replace(w, date=0))),
        evaluate("hybrid, payloads without seq", conversations, product_ranker(conversations, with_seq=False)),
        evaluate("hybrid, one batch per session", conversations, product_ranker(conversations, batching="session")),
        evaluate("hybrid, dense pool 200", conversations, product_ranker(conversations, pool=200)),
        evaluate("**hybrid (product default)**", conversations, product_ranker(conversations)),
    ]
    print(table(results, conversations, args.detail))
    if args.sweep:
        print()
        print(sweep(conversations))


if __name__ == "__main__":
    main()
