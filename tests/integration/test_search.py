"""Hybrid search (shared/search/hybrid.py) through the real store engines: Qdrant Edge in process, the Qdrant
adapter over qdrant-client's local mode, and a Chroma server; also over a Qdrant server when QDRANT_TEST_URL
names one (1.19.0 or later; each test's collection is deleted after it).

Text analysis and the ranking of candidates, without a store, are in tests/unit/test_search_ranking.py."""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.ai.embeddings import Embedder
from shared.contract import MemoryInput, SearchFilters
from shared.memory.service import MemoryService
from shared.search.hybrid import DEFAULT_WEIGHTS, HybridSearcher
from shared.settings import Settings
from tests.helpers import local_model_path


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    from shared.ai.backends import build_embedder

    return build_embedder(_settings(Path("/nonexistent")))


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "vector_store": "qdrant",
        "qdrant_url": None,
        "local_embedding_model_path": local_model_path(),
        "local_embedding_threads": 1,
        "state_store": "local",
        "llm_provider": "none",
        "embedding_provider": "local",
        "graph_store": "none",
    }
    values.update(overrides)
    return Settings(**values)


class Workers:
    """Two workers on one store engine, each with its own MemoryService and searcher.

    On the embedded engine the two share the store adapter (one process owns the folder); on
    Chroma each has a client of its own, as two Function App instances have.
    """

    def __init__(self, one: MemoryService, two: MemoryService, cleanup: Callable[[], None]) -> None:
        self.one, self.two, self.cleanup = one, two, cleanup
        self.store = one.store

    def dense(self) -> MemoryService:
        searcher = HybridSearcher(self.one.store, self.one.embedder, self.one.settings)
        searcher.mode = "dense"
        return _sibling(self.one, searcher)


def _sibling(service: MemoryService, searcher: HybridSearcher) -> MemoryService:
    """Another worker's service on the same store, history and mem0 (one process owns the folder)."""
    return MemoryService(
        service.settings,
        store=service.store,
        embedder=service.embedder,
        searcher=searcher,
        engine=service.engine,
        history=service.history,
        sessions=service.sessions,
        events=service.events,
        erasure=service.erasure,
        graph=None,
        llm=service.llm,
    )


def _service(settings: Settings, embedder: Embedder) -> MemoryService:
    from shared.stores.vector import build_vector_store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _service_on(build_vector_store(settings), settings, embedder)


def _service_on(store: Any, settings: Settings, embedder: Embedder) -> MemoryService:
    from shared.ai.llm import build_chat_model
    from shared.factory import build_session_store
    from shared.memory.mem0_engine import Mem0Engine, prepare_mem0_environment
    from shared.stores.state.erasure import build_erasure_ledger
    from shared.stores.state.events import build_event_store
    from shared.stores.state.history import build_history_store

    prepare_mem0_environment(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    history = build_history_store(settings)
    llm = build_chat_model(settings)
    return MemoryService(
        settings,
        store=store,
        embedder=embedder,
        searcher=HybridSearcher(store, embedder, settings),
        engine=Mem0Engine(settings, embedder, llm, history, store),
        history=history,
        sessions=build_session_store(settings),
        events=build_event_store(settings),
        erasure=build_erasure_ledger(settings),
        graph=None,
        llm=llm,
    )


QDRANT_TEST_URL = os.environ.get("QDRANT_TEST_URL")
ENGINES = ["edge", "qdrant-local", "chroma", *(["qdrant-server"] if QDRANT_TEST_URL else [])]


@pytest.fixture(params=ENGINES)
def workers(request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder) -> Iterator[Workers]:
    if request.param in ("edge", "qdrant-local", "qdrant-server"):
        settings = _settings(tmp_path / "data")
        cleanup: Callable[[], None] | None = None
        if request.param == "edge":
            one = _service(settings, embedder)
        else:
            # The Qdrant server adapter over qdrant-client's local mode, or over a Qdrant server.
            from qdrant_client import QdrantClient

            from shared.stores.vector.qdrant import QdrantServerStore

            if request.param == "qdrant-server":
                client = QdrantClient(url=QDRANT_TEST_URL, timeout=60)
                collection = f"search-{uuid.uuid4().hex[:8]}"
                cleanup = functools.partial(client.delete_collection, collection)
            else:
                client = QdrantClient(path=str(tmp_path / "qdrant-local"))
                collection = "memories"
            one = _service_on(QdrantServerStore(client, collection, 384), settings, embedder)
        two = _sibling(one, HybridSearcher(one.store, embedder, one.settings))

        def close() -> None:
            if cleanup is not None:
                cleanup()
            one.close()

        built = Workers(one, two, close)
    else:
        server = request.getfixturevalue("chroma_server")
        collection = f"search-{uuid.uuid4().hex[:8]}"
        services = [
            _service(
                _settings(
                    tmp_path / name,
                    vector_store="chroma",
                    chroma_host=server.host,
                    chroma_port=server.port,
                    collection_name=collection,
                ),
                embedder,
            )
            for name in ("one", "two")
        ]

        def cleanup() -> None:
            services[0].store.delete_col()  # every collection of the store (one per user on Chroma)

        built = Workers(services[0], services[1], cleanup)
    yield built
    built.cleanup()


PLACES = ["the dentist", "the eye doctor", "the physiotherapist", "my GP", "the dermatologist", "the allergist"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "next week", "tomorrow", "soon"]
# 60 memories close in meaning to the query below, none naming Okafor: more than a dense top 10
FILLER = [f"I have an appointment with {place} on {day}" for place in PLACES for day in DAYS]
OKAFOR = "Okafor fixed my chipped tooth and was very gentle"
QUERY = "When is my appointment with Dr. Okafor?"


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _add(service: MemoryService, user: str, texts: list[str], **metadata: Any) -> list[str]:
    return service.add_memories(user, [MemoryInput(content=t, metadata=dict(metadata) or None) for t in texts])


def _ranked(results: list[Any]) -> list[str]:
    return [r.memory for r in results]


def test_a_rare_name_is_found_where_dense_search_misses_it(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, [*FILLER, OKAFOR])
    assert OKAFOR not in _ranked(workers.dense().search_memories(user, QUERY, 10))
    results = workers.one.search_memories(user, QUERY, 10)
    assert results[0].memory == OKAFOR
    scores = [r.score for r in results]
    assert all(s is not None and 0 <= s <= 1 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_the_seeds_chinese_examples_are_found_by_keyword(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, ["用户偏好使用Python进行数据分析", "喜欢早上喝咖啡", "工作时间是9-17点"])
    # MiniLM sees Chinese as unknown tokens: the keyword side is what finds it
    assert workers.one.search_memories(user, "编程语言偏好", 1)[0].memory == "用户偏好使用Python进行数据分析"
    assert workers.one.search_memories(user, "咖啡", 1)[0].memory == "喜欢早上喝咖啡"


def test_results_never_cross_users(workers: Workers) -> None:
    alice, bob = _user(), _user()
    _add(workers.one, alice, ["Alice keeps her bike at Okafor's garage", *FILLER[:5]])
    _add(workers.one, bob, [OKAFOR, *FILLER[5:10]])
    _add(workers.one, alice + " ", [OKAFOR])  # a look-alike id is another user
    for service in (workers.one, workers.two):
        results = service.search_memories(alice, "Okafor", 10)
        assert results
        assert {r.user_id for r in results} == {alice}
        assert OKAFOR not in _ranked(results)


def test_filters_and_threshold_hold_for_keyword_only_matches(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, FILLER, category="health")
    _add(workers.one, user, [OKAFOR], category="dentist", source="chat")

    health = workers.one.search_memories(user, QUERY, 10, SearchFilters(categories=["health"]))
    assert health
    assert OKAFOR not in _ranked(health)
    assert {r.metadata["category"] for r in health} == {"health"}

    chat = workers.one.search_memories(user, QUERY, 10, SearchFilters(metadata={"source": "chat"}))
    assert _ranked(chat) == [OKAFOR]

    future = datetime.now(UTC) + timedelta(days=1)
    assert workers.one.search_memories(user, QUERY, 10, SearchFilters(created_after=future)) == []
    assert workers.one.search_memories(user, QUERY, 10, SearchFilters(created_before=future))

    everything = workers.one.search_memories(user, QUERY, 20)
    cut = everything[0].score
    assert cut is not None
    above = workers.one.search_memories(user, QUERY, 20, threshold=cut)
    assert above
    assert all(r.score is not None and r.score >= cut for r in above)
    assert len(above) < len(everything)


def test_another_worker_sees_writes_deletes_and_rewrites_at_once(workers: Workers) -> None:
    user = _user()
    ids = _add(workers.one, user, [*FILLER, "Okafor moved his practice to Elm Street"])
    assert OKAFOR not in _ranked(workers.two.search_memories(user, QUERY, 10))
    added = _add(workers.one, user, [OKAFOR, "We booked the Zanzibar trip"])
    assert OKAFOR in _ranked(workers.two.search_memories(user, QUERY, 3))
    assert workers.two.search_memories(user, "zanzibar", 1)[0].memory == "We booked the Zanzibar trip"
    workers.one.delete_memory(added[0], user)
    workers.one.update_memory(ids[-1], "Okafor retired last spring", None, user)
    results = _ranked(workers.two.search_memories(user, "Okafor", 10))
    assert OKAFOR not in results
    assert "Okafor retired last spring" in results
    assert "Okafor moved his practice to Elm Street" not in results
    workers.one.delete_user_memories(user)
    assert workers.two.search_memories(user, "zanzibar", 10) == []


VET_CHAT = [
    "Ben: How was the weekend?",
    "Ana: Busy! We took Max to the vet on Saturday.",
    "Ben: Oh no, what did the vet say about his limp?",
    "Ana: Nothing serious, just a sprain. Two weeks of rest and short walks.",
    "Ben: Glad to hear it. I started a pottery class.",
    "Ana: Fun! Send me a photo of your first bowl.",
]
VET_DISTRACTORS = [
    "Ben: My neighbour's dog limps after long walks",
    "Ana: The vet clinic on Elm Street closes at six",
    "Ben: I twisted my ankle playing football last year",
    "Ana: Max loves chasing squirrels in the park",
]


def test_conversation_context_through_the_store(workers: Workers) -> None:
    """An answer that shares no word with the question is found through the turn before it."""
    user = _user()
    _add(workers.one, user, [*FILLER[:30], *VET_DISTRACTORS])
    _add(workers.one, user, VET_CHAT[:2])
    _add(workers.one, user, VET_CHAT[2:])  # two writes: the order runs on across them
    question, answer = "What did the vet say about Max's limp?", VET_CHAT[3]
    assert answer in _ranked(workers.one.search_memories(user, question, 4))
    searcher = workers.two.searcher
    assert searcher is not None
    searcher.weights = replace(DEFAULT_WEIGHTS, context=0)
    assert answer not in _ranked(workers.two.search_memories(user, question, 5))


def test_dense_mode_is_plain_cosine_search(workers: Workers, embedder: Embedder) -> None:
    user = _user()
    _add(workers.one, user, [*FILLER[:10], OKAFOR])
    dense = workers.dense().search_memories(user, QUERY, 5)
    hits = workers.store.search(QUERY, embedder.embed(QUERY, "search"), top_k=5, filters={"user_id": user})
    assert [r.id for r in dense] == [h.id for h in hits]
    assert [r.score for r in dense] == pytest.approx([min(max(h.score or 0, 0), 1) for h in hits], abs=1e-5)


def test_a_search_reads_only_candidates_and_neighbours_from_the_store(workers: Workers) -> None:
    """No scan of the user's memories on the search path: a cold worker costs what a warm one does."""
    user = _user()
    _add(workers.one, user, [*FILLER, OKAFOR])
    calls: list[str] = []

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(self.inner, name)

    searcher = HybridSearcher(Spy(workers.store), workers.one.embedder, workers.one.settings)  # type: ignore[arg-type]
    first = searcher.search(user, QUERY, 5, None, None)
    again = searcher.search(user, QUERY, 5, None, None)
    assert first == again and first[0].memory == OKAFOR
    assert set(calls) <= {"candidates", "neighbours"}


def test_concurrent_searches_agree(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, [*FILLER, OKAFOR])
    firsts: list[str] = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            firsts.append(workers.two.search_memories(user, QUERY, 5)[0].memory)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert firsts == [OKAFOR] * 8
