"""Hybrid search (shared/search.py): text analysis, the ranking of engine candidates, and the search
through the real store engines (Qdrant Edge in process; a Chroma server)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.embeddings import Embedder
from shared.memory_service import MemoryService
from shared.models import MemoryInput, SearchFilters
from shared.search import (
    CONTEXT_WINDOW_SECONDS,
    DEFAULT_WEIGHTS,
    HybridSearcher,
    Query,
    add_context,
    memory_month,
    memory_speaker,
    own_scores,
    parse_month,
    query_months,
    tokenize,
)
from shared.settings import Settings
from shared.stores.vector.port import SEQ_KEY, TS_KEY, Candidate
from tests.helpers import local_model_path


# --- text analysis ------------------------------------------------------------------------------
def test_tokenize_drops_stop_words_stems_and_strips_possessives() -> None:
    assert tokenize("When did Caroline's friends go to the LGBTQ support-group?") == [
        "carolin",
        "friend",
        "go",
        "lgbtq",
        "support",
        "group",
    ]
    assert tokenize("I don't know") == ["know"]
    assert tokenize("painting paintings painted") == ["paint", "paint", "paint"]


def test_tokenize_indexes_cjk_as_bigrams_next_to_latin_words() -> None:
    assert tokenize("用户偏好使用Python") == ["用户", "户偏", "偏好", "好使", "使用", "python"]
    assert tokenize("我") == ["我"]
    # the query shares the bigram 偏好 (preference) with the memory above
    assert "偏好" in tokenize("编程语言偏好")


@pytest.mark.parametrize(
    ("query", "months"),
    [
        ("When did Melanie go camping in July?", [(None, 7)]),
        ("What did she do in May 2023?", [(2023, 5)]),
        ("May I ask what happened in 2022?", [(2022, None)]),  # "May I" is not the month
        ("We met on 5 Aug", [(None, 8)]),
        ("I met Jan at the park", []),  # "Jan" alone is a name
        ("what changed since 2024-03-02", [(2024, 3)]),
        ("2023年5月去了哪里", [(2023, 5)]),
        ("nothing about time", []),
    ],
)
def test_query_months(query: str, months: list[tuple[int | None, int | None]]) -> None:
    assert query_months(query) == months


def test_memory_month_prefers_the_memory_date_over_creation() -> None:
    assert parse_month("1:56 pm on 8 May, 2023") == (2023, 5)
    assert parse_month("2023年5月3日") == (2023, 5)
    assert parse_month(1_700_000_000) == (2023, 11)
    payload = {"session_date": "8 May, 2023", "created_at": "2026-01-02T03:04:05+00:00"}
    assert memory_month(payload) == (2023, 5)
    assert memory_month({"created_at": "2026-01-02T03:04:05+00:00"}) == (2026, 1)
    assert memory_month({"date": "someday", "created_at": "2026-01-02T03:04:05+00:00"}) == (2026, 1)


def test_memory_speaker_from_metadata_or_a_transcript_prefix() -> None:
    assert memory_speaker({"data": "Caroline: I went to a support group"}) == "Caroline"
    assert memory_speaker({"data": "小明：我喜欢科幻电影"}) == "小明"
    assert memory_speaker({"data": "I like tea: green"}) is None
    assert memory_speaker({"data": "https://example.com"}) is None
    assert memory_speaker({"data": "likes tea", "speaker": "Ana"}) == "Ana"


# --- ranking the engine's candidates -------------------------------------------------------------
def _candidate(
    name: str, text: str, semantic: float = 0.0, keyword: float = 0.0, seq: int | None = None, **extra: Any
) -> Candidate:
    payload: dict[str, Any] = {"user_id": "u", "data": text, TS_KEY: 1_767_261_600.0, **extra}
    if seq is not None:
        payload[SEQ_KEY] = seq
    return Candidate(name, payload, semantic, keyword)


def test_keyword_evidence_is_relative_to_the_best_keyword_candidate() -> None:
    scored = own_scores(
        [_candidate("a", "x", 0.5, keyword=4.0), _candidate("b", "y", 0.5, keyword=2.0), _candidate("c", "z", 0.5)],
        Query.parse("anything"),
    )
    assert [s.own for s in scored] == pytest.approx([0.3 + 0.4, 0.3 + 0.2, 0.3])


def test_without_any_keyword_match_the_score_is_the_plain_similarity() -> None:
    scored = own_scores([_candidate("a", "x", 0.7), _candidate("b", "y", -0.2)], Query.parse("anything"))
    assert [s.own for s in scored] == pytest.approx([0.7, 0.0])


def test_speaker_and_date_boosts() -> None:
    ana = _candidate("a", "Ana: we went hiking", 0.5, session_date="3 July, 2023")
    ben = _candidate("b", "Ben: we went hiking", 0.5, session_date="9 May, 2023")
    plain = replace(DEFAULT_WEIGHTS, context=0, speaker=0, date=0)
    base = [s.own for s in own_scores([ana, ben], Query.parse("Where did Ben go hiking?"), plain)]
    boosted = [
        s.own for s in own_scores([ana, ben], Query.parse("Where did Ben go hiking?"), replace(plain, speaker=0.1))
    ]
    assert [b - a for a, b in zip(base, boosted, strict=True)] == pytest.approx([0, 0.1])
    query = Query.parse("Where did they go hiking in July 2023?")
    base = [s.own for s in own_scores([ana, ben], query, plain)]
    boosted = [s.own for s in own_scores([ana, ben], query, replace(plain, date=0.1))]
    assert [b - a for a, b in zip(base, boosted, strict=True)] == pytest.approx([0.1, 0])


def test_context_lifts_the_write_order_neighbours_of_a_strong_match() -> None:
    items = own_scores(
        [
            _candidate("q", "question", 0.9, seq=4),
            _candidate("a", "answer", 0.1, seq=5),
            _candidate("f", "far", 0.1, seq=9),
        ],
        Query.parse("question"),
    )
    add_context(items)
    score = {item.candidate.id: item.score for item in items}
    assert score["a"] == pytest.approx(0.1 + 0.3 * 0.9)
    assert score["f"] == pytest.approx(0.1)
    assert score["q"] == pytest.approx(0.9 + 0.3 * 0.1)


def test_neighbours_written_apart_or_without_an_order_lend_no_context() -> None:
    later = 1_767_261_600.0 + CONTEXT_WINDOW_SECONDS + 1
    items = own_scores(
        [
            _candidate("q", "question", 0.9, seq=4),
            _candidate("late", "written a day later", 0.1, seq=5, **{TS_KEY: later}),
            _candidate("none", "no order known", 0.1),
        ],
        Query.parse("question"),
    )
    add_context(items)
    assert [round(item.score, 6) for item in items[1:]] == [0.1, 0.1]


# --- the search through real engines ------------------------------------------------------------
@pytest.fixture(scope="module")
def embedder() -> Embedder:
    from shared.backends import build_embedder

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
        service = MemoryService(self.one.memory, self.one.store, self.one.embedder, self.one.settings)
        searcher = HybridSearcher(self.one.store, self.one.embedder, self.one.settings)
        searcher.mode = "dense"
        service.searcher = searcher
        return service


def _service(settings: Settings, embedder: Embedder) -> MemoryService:
    from shared.stores.vector import build_vector_store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _service_on(build_vector_store(settings), settings, embedder)


def _service_on(store: Any, settings: Settings, embedder: Embedder) -> MemoryService:
    from shared.backends import build_memory, prepare_mem0_environment
    from shared.history import build_history_store
    from shared.llm import build_chat_model

    prepare_mem0_environment(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings), store)
    return MemoryService(memory, store, embedder, settings, HybridSearcher(store, embedder, settings))


@pytest.fixture(params=["edge", "qdrant-local", "chroma"])
def workers(request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder) -> Iterator[Workers]:
    if request.param in ("edge", "qdrant-local"):
        settings = _settings(tmp_path / "data")
        if request.param == "edge":
            one = _service(settings, embedder)
        else:
            # The Qdrant server adapter over qdrant-client's local mode (no server runs here).
            from qdrant_client import QdrantClient

            from shared.stores.vector.qdrant import QdrantServerStore

            client = QdrantClient(path=str(tmp_path / "qdrant-local"))
            one = _service_on(QdrantServerStore(client, "memories", 384), settings, embedder)
        two = MemoryService(
            one.memory, one.store, embedder, one.settings, HybridSearcher(one.store, embedder, one.settings)
        )
        built = Workers(one, two, one.close)
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
    if workers.store.kind == "qdrant":
        pytest.skip("qdrant-client's local mode has only its word tokenizer, which keeps a Chinese run whole")
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
