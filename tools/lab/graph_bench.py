"""Graph memory latency on a real Neo4j: write and read p50/p95 with 1,000 entities per user.

    python -m tools.lab.graph_bench                      # starts a private Neo4j (tools/harness/neo4j_launcher)
    python -m tools.lab.graph_bench --java-opts "-Xms1g -Xmx1g"   # ... with a server-like JVM
    NEO4J_URI=bolt://localhost:7687 NEO4J_PASSWORD=... python -m tools.lab.graph_bench --users 3

Each user first gets ENTITIES entities and about as many relations (a third of them on the user's
own node, the worst case for search since that node is always a seed), written through
`GraphStore.extract_and_store` in batches. Then it measures, on those full graphs:

- write: `extract_and_store` of a typical chat turn (4 entities, 3 relations, one invalidation
  half of the time) with an in-process LLM stub, so the figure is the graph layer's own cost:
  the context read, the local embedding of names and fact sentences, and the write transaction;
- read: `search` (query embedding + Cypher), and the Cypher part alone (vector given).

The LLM call is excluded on purpose: it costs 0.5-3 s on any hosted model and would hide the
graph's share. The local embedder is the real one (all-MiniLM-L6-v2 via ONNX Runtime).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared.observability.percentiles import percentile

REPO = Path(__file__).resolve().parents[2]

_TOPICS = (
    "film", "book", "city", "restaurant", "band", "programming_language", "sport", "company", "dish", "game",
    "country", "hobby", "friend", "colleague", "tool", "library", "podcast", "museum", "beach", "mountain",
)  # fmt: skip
_WORDS = (
    "amber", "blue", "crimson", "delta", "echo", "falcon", "granite", "harbor", "indigo", "jade", "kepler",
    "lumen", "maple", "nova", "orbit", "pine", "quartz", "river", "sierra", "tundra", "umbra", "vivid",
    "willow", "xenon", "yonder", "zephyr",
)  # fmt: skip
_QUERIES = (
    "what films do I like",
    "where do I live",
    "which programming languages do I use",
    "tell me about my friends",
    "what food do I enjoy",
    "which bands do I listen to",
    "what sports do I play",
    "which companies have I worked for",
    "recommend a museum I would like",
    "what do I know about kepler harbor",
)


class ScriptedLLM:
    """Answers extraction prompts with the next prepared JSON object, in-process (no network)."""

    def __init__(self) -> None:
        self.next: Callable[[str], dict[str, Any]] | None = None

    def complete(self, messages: list[dict[str, str]], *, json_mode: bool = False) -> str:
        assert self.next is not None
        return json.dumps(self.next(messages[0]["content"]))


class TimedEmbedder:
    """Wraps the real embedder to separate embedding time from Neo4j time."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dims = inner.dims
        self.seconds = 0.0

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        started = time.perf_counter()
        try:
            return list(self.inner.embed(text, memory_action))
        finally:
            self.seconds += time.perf_counter() - started

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]:
        started = time.perf_counter()
        try:
            return list(self.inner.embed_batch(texts, memory_action))
        finally:
            self.seconds += time.perf_counter() - started


def entity_name(rng: random.Random, i: int) -> tuple[str, str]:
    topic = _TOPICS[i % len(_TOPICS)]
    return f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS)} {i}", topic


def summary(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def populate(store: Any, llm: ScriptedLLM, user_id: str, entities: int, rng: random.Random) -> float:
    """Fill the user's graph with `entities` entities and about as many relations; return seconds."""
    batch = store.max_entities  # the most one extraction may carry
    names = [entity_name(rng, i) for i in range(entities)]
    started = time.perf_counter()
    for start in range(0, entities, batch):
        chunk = names[start : start + batch]
        relations = []
        for j, (name, topic) in enumerate(chunk):
            if (start + j) % 3 == 0:  # a third hang off the user's own node: a realistic hub
                relations.append({"source": user_id, "relation": "LIKES", "target": name})
            elif start + j > 0:
                other = names[rng.randrange(0, start + j)][0]
                relations.append({"source": name, "relation": f"RELATED_TO_{topic.upper()}", "target": other})
        payload = {
            "entities": [{"name": n, "type": t} for n, t in chunk],
            "relations": relations[: store.max_relations],
        }
        llm.next = lambda _prompt, payload=payload: payload
        store.extract_and_store(user_id, " ".join(n for n, _ in chunk), [str(uuid.uuid4())])
    return time.perf_counter() - started


def typical_turn(user_id: str, rng: random.Random, n: int) -> Callable[[str], dict[str, Any]]:
    """A chat turn's extraction: 4 entities, 3 relations, and half the time one invalidated relation."""
    a, b, c = (f"{rng.choice(_WORDS).title()} turn{n} {k}" for k in "abc")

    def answer(prompt: str) -> dict[str, Any]:
        refs = [json.loads(line)["ref"] for line in prompt.splitlines() if line.startswith('{"ref"')]
        return {
            "entities": [{"name": a, "type": "film"}, {"name": b, "type": "city"}, {"name": c, "type": "friend"}],
            "relations": [
                {"source": user_id, "relation": "LIKES", "target": a},
                {"source": user_id, "relation": "VISITED", "target": b},
                {"source": c, "relation": "RECOMMENDED", "target": a},
            ],
            "invalidates": refs[:1] if n % 2 and refs else [],
        }

    return answer


def run(uri: str, user: str, password: str, database: str, users: int, entities: int, samples: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from shared.ai.embeddings import LocalEmbedder
    from shared.graph import GraphStore
    from shared.settings import Settings
    from tools.harness.models import local_model_path

    model_path = local_model_path()
    embedder = TimedEmbedder(
        LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", model_path, 384, int(os.environ.get("THREADS", "1")))
    )
    settings = Settings(
        graph_store="neo4j", neo4j_uri=uri, neo4j_username=user, neo4j_password=password, neo4j_database=database
    )
    llm = ScriptedLLM()
    store = GraphStore(settings, embedder, llm)
    rng = random.Random(7)
    run_id = uuid.uuid4().hex[:8]
    user_ids = [f"bench-{run_id}-{i}" for i in range(users)]
    try:
        store.ensure_schema()
        embedder.embed("warm up")
        populate_seconds = [populate(store, llm, u, entities, rng) for u in user_ids]
        graph = store.user_graph(user_ids[0])
        writes, write_embed, reads, reads_cypher = [], [], [], []
        for n in range(samples):
            u = user_ids[n % users]
            query = _QUERIES[n % len(_QUERIES)]
            started = time.perf_counter()
            store.search(u, query, 10)
            reads.append(time.perf_counter() - started)
            vector = embedder.embed(query)
            started = time.perf_counter()
            store.search(u, query, 10, vector=vector)
            reads_cypher.append(time.perf_counter() - started)
            llm.next = typical_turn(u, rng, n)
            embedded_before = embedder.seconds
            started = time.perf_counter()
            result = store.extract_and_store(u, f"turn {n}: I liked a film a friend recommended", [str(uuid.uuid4())])
            writes.append(time.perf_counter() - started)
            write_embed.append(embedder.seconds - embedded_before)
            assert result.status == "written", result
        return {
            "neo4j": uri,
            "users": users,
            "entities_per_user": entities,
            "relations_per_user": len(graph["edges"]),
            "populate_seconds_per_user": round(statistics.fmean(populate_seconds), 1),
            "write_extract_and_store_without_llm": summary(writes),
            "write_of_which_embedding": summary(write_embed),
            "read_search": summary(reads),
            "read_search_cypher_only": summary(reads_cypher),
        }
    finally:
        for u in user_ids:
            store.delete_user(u)
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--entities", type=int, default=1000, help="entities per user")
    parser.add_argument("--samples", type=int, default=300, help="measured writes and reads")
    parser.add_argument(
        "--java-opts",
        default=None,
        help="JVM options of the private Neo4j; default: the test harness's (C1-only JIT, 512 MB heap, tuned "
        "for fast starts). '-Xms1g -Xmx1g' gives a server-like JIT.",
    )
    args = parser.parse_args(argv)
    uri = os.environ.get("NEO4J_URI")
    if uri:
        figures = run(
            uri,
            os.environ.get("NEO4J_USERNAME", "neo4j"),
            os.environ.get("NEO4J_PASSWORD", ""),
            os.environ.get("NEO4J_DATABASE", "neo4j"),
            args.users,
            args.entities,
            args.samples,
        )
    else:
        sys.path.insert(0, str(REPO))
        from tools.harness.neo4j_server import DEFAULT_JAVA_OPTS, Neo4jServer

        java_opts = tuple(args.java_opts.split()) if args.java_opts else DEFAULT_JAVA_OPTS
        with tempfile.TemporaryDirectory() as tmp, Neo4jServer(Path(tmp) / "data", java_opts=java_opts) as server:
            figures = run(server.uri, server.user, server.password, "neo4j", args.users, args.entities, args.samples)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
