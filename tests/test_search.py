"""Hybrid search (shared/search.py): the text analysis and ranking as functions, and the whole path
through the real MemoryService on an embedded Qdrant with the local MiniLM model."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.embeddings import Embedder
from shared.memory_service import MemoryService
from shared.models import MemoryInput, SearchFilters
from shared.search import (
    DEFAULT_WEIGHTS,
    HybridSearcher,
    Query,
    UserIndex,
    _similarity_function,
    memory_month,
    memory_speaker,
    parse_month,
    query_months,
    rank,
    tokenize,
)
from shared.settings import Settings
from tests.conftest import local_model_path
from tests.support.chroma_server import chroma_server  # noqa: F401 - registers the fixture


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


# --- ranking on an index ------------------------------------------------------------------------
def _payload(text: str, created: str, seq: int | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "user_id": "u",
        "data": text,
        "hash": hashlib.md5(text.encode()).hexdigest(),
        "created_at": created,
        "updated_at": created,
        **extra,
    }
    if seq is not None:
        payload["seq"] = seq
    return payload


CONVERSATION = [
    "Ana: Guess what, I adopted a puppy last weekend!",
    "Ben: No way! What breed is it?",
    "Ana: A border collie. She is full of energy.",
    "Ben: I am repainting my kitchen this month.",
    "Ana: Which colour did you pick?",
    "Ben: A pale green, it looks calm.",
]


def _conversation_index(with_seq: bool = True) -> UserIndex:
    created = "2026-01-01T10:00:00+00:00"
    rows = [(f"m{i}", _payload(t, created, i if with_seq else None)) for i, t in enumerate(CONVERSATION)]
    return UserIndex("u", rows)


def _rank(index: UserIndex, query: str, weights: Any = DEFAULT_WEIGHTS) -> np.ndarray:
    # no dense evidence at all: isolates the keyword, boost and context signals
    empty = np.zeros(0, dtype=np.int64)
    return rank(index, Query.parse(query), empty, np.zeros(0), pool_exhaustive=True, weights=weights)


def test_keyword_share_is_the_idf_weighted_fraction_of_known_query_words() -> None:
    index = _conversation_index()
    scores, known = index.keyword_scores(tokenize("border collie zebra"))
    assert known
    assert scores.argmax() == 2
    assert 0.5 < scores[2] <= 1.0  # both known words are in it; "zebra" is in no memory and is left out
    assert np.count_nonzero(scores) == 1
    assert index.keyword_scores(tokenize("zebra"))[1] is False


def test_context_lifts_the_turn_after_a_match_within_a_batch() -> None:
    index = _conversation_index()
    scores = _rank(index, "What breed is the puppy?")
    # turn 0 names the puppy and turn 1 the breed; turn 2 (the answer) shares no word with the
    # query and ranks only through its neighbour
    assert scores[2] > 0
    assert scores[2] > scores[4]
    without = _rank(index, "What breed is the puppy?", replace(DEFAULT_WEIGHTS, context=0))
    assert without[2] == 0


def test_a_batch_without_seq_has_no_known_order_and_no_context() -> None:
    index = _conversation_index(with_seq=False)
    assert (index.previous == -1).all()
    assert (index.next == -1).all()


def test_a_batch_without_seq_is_a_break_between_the_batches_around_it() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first, middle, last = (start + timedelta(seconds=s) for s in (0, 1, 2))
    rows = [
        ("a", _payload("a", first.isoformat())),
        ("b", _payload("b", middle.isoformat())),  # a batch of two, order unknown
        ("c", _payload("c", middle.isoformat())),
        ("d", _payload("d", last.isoformat())),
    ]
    index = UserIndex("u", rows)
    assert index.next.tolist() == [-1, -1, -1, -1]
    assert index.previous.tolist() == [-1, -1, -1, -1]


def test_memories_written_apart_are_neighbours_only_within_the_window() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start, start + timedelta(minutes=5), start + timedelta(days=2)]
    rows = [(f"m{i}", _payload(f"note {i}", t.isoformat())) for i, t in enumerate(times)]
    index = UserIndex("u", rows)
    assert index.next.tolist() == [1, -1, -1]
    assert index.previous.tolist() == [-1, 0, -1]


def test_speaker_and_date_boosts() -> None:
    rows = [
        ("a", _payload("Ana: we went hiking", "2026-01-01T00:00:00+00:00", session_date="3 July, 2023")),
        ("b", _payload("Ben: we went hiking", "2026-01-01T00:00:01+00:00", session_date="9 May, 2023")),
    ]
    index = UserIndex("u", rows)
    plain = replace(DEFAULT_WEIGHTS, context=0, speaker=0, date=0)
    boosted = _rank(index, "Where did Ben go hiking?", replace(plain, speaker=0.1))
    assert boosted - _rank(index, "Where did Ben go hiking?", plain) == pytest.approx([0, 0.1])
    boosted = _rank(index, "Where did they go hiking in July 2023?", replace(plain, date=0.1))
    assert boosted - _rank(index, "Where did they go hiking in July 2023?", plain) == pytest.approx([0.1, 0])


def test_chroma_scores_become_cosine_similarity() -> None:
    class ChromaDB:  # the name mem0's adapter has
        class collection:  # noqa: N801 - mimics the adapter's attribute
            metadata: dict[str, str] = {}  # noqa: RUF012

    to_cosine = _similarity_function(ChromaDB())
    for cosine in (0.9, 0.5, 0.1):
        squared_l2 = 2 - 2 * cosine  # unit vectors
        assert to_cosine(1 / (1 + squared_l2)) == pytest.approx(cosine)


# --- the real service on an embedded Qdrant -----------------------------------------------------
@pytest.fixture(scope="module")
def embedder() -> Embedder:
    from shared.backends import build_embedder

    return build_embedder(_settings(Path("/nonexistent")))


def _settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        vector_store="qdrant",
        qdrant_url=None,
        local_embedding_model_path=local_model_path(),
        local_embedding_threads=1,
        state_store="local",
        llm_provider="none",
        embedding_provider="local",
    )


class Workers:
    """Two workers on one store: each has its own MemoryService and searcher (and so its own cache).

    Embedded Qdrant locks its folder to one client, so the workers share the mem0 instance; that is
    the same as two processes sharing a Qdrant server, as far as the searchers can tell.
    """

    def __init__(self, data_dir: Path, embedder: Embedder) -> None:
        from shared.backends import build_memory, prepare_mem0_environment
        from shared.history import build_history_store
        from shared.llm import build_chat_model

        settings = _settings(data_dir)
        prepare_mem0_environment(settings)
        self.memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings))
        self.one = MemoryService(self.memory, embedder, settings, HybridSearcher(self.memory, embedder, settings))
        self.two = MemoryService(self.memory, embedder, settings, HybridSearcher(self.memory, embedder, settings))
        self.plain = MemoryService(self.memory, embedder, settings)


@pytest.fixture
def workers(tmp_path: Path, embedder: Embedder) -> Iterator[Workers]:
    built = Workers(tmp_path / "data", embedder)
    yield built
    built.memory.vector_store.client.close()


PLACES = ["the dentist", "the eye doctor", "the physiotherapist", "my GP", "the dermatologist", "the allergist"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "next week", "tomorrow", "soon"]
# 60 memories close in meaning to the query below, none naming Okafor: more than the dense pool
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
    assert OKAFOR not in _ranked(workers.plain.search_memories(user, QUERY, 10))
    results = workers.one.search_memories(user, QUERY, 10)
    assert results[0].memory == OKAFOR
    scores = [r.score for r in results]
    assert all(s is not None and 0 <= s <= 1 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_chinese_query_matches_through_shared_bigrams(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, ["用户偏好使用Python进行数据分析", "喜欢早上喝咖啡", "工作时间是9-17点"])
    assert workers.one.search_memories(user, "编程语言偏好", 1)[0].memory == "用户偏好使用Python进行数据分析"


def test_results_never_cross_users(workers: Workers) -> None:
    alice, bob = _user(), _user()
    _add(workers.one, alice, ["Alice keeps her bike at Okafor's garage", *FILLER[:5]])
    _add(workers.one, bob, [OKAFOR, *FILLER[5:10]])
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


def test_another_worker_sees_a_new_memory_at_once_when_it_is_a_dense_candidate(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, FILLER[:30])
    assert OKAFOR not in _ranked(workers.two.search_memories(user, QUERY, 10))  # worker two caches its index
    _add(workers.one, user, [OKAFOR])  # worker one's invalidate never reaches worker two
    # 31 memories: all are dense candidates, and the store's answer shows worker two what is new
    assert workers.two.search_memories(user, QUERY, 10)[0].memory == OKAFOR


def test_invalidate_with_ids_rereads_only_those(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, FILLER)
    searcher = workers.two.searcher
    assert isinstance(searcher, HybridSearcher)
    workers.two.search_memories(user, QUERY, 10)
    before = searcher.index_for(user)
    ids = _add(workers.one, user, [OKAFOR])
    searcher.invalidate(user, ids)
    assert workers.two.search_memories(user, QUERY, 10)[0].memory == OKAFOR
    after = searcher.index_for(user)
    assert after.size == before.size + 1
    assert after.built_at == before.built_at  # patched, not re-read


def test_a_memory_far_from_the_query_shows_up_on_another_worker_within_the_max_age(workers: Workers) -> None:
    user = _user()
    _add(workers.one, user, [f"{text} (copy {i})" for i in range(3) for text in FILLER])  # 180 memories
    searcher = workers.two.searcher
    assert isinstance(searcher, HybridSearcher)
    workers.two.search_memories(user, "zanzibar", 10)  # builds worker two's index
    _add(workers.one, user, ["We booked the Zanzibar trip"])
    # searches past this age compare the ids in the store with the index's in the background
    searcher.max_age = 0.5
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "We booked the Zanzibar trip" in _ranked(workers.two.search_memories(user, "zanzibar", 10)):
            break
        time.sleep(0.2)
    else:
        pytest.fail("worker two never saw the memory worker one added")


def test_a_full_reread_in_the_background_sees_rewrites(workers: Workers) -> None:
    user = _user()
    ids = _add(workers.one, user, [f"{text} (copy {i})" for i in range(3) for text in FILLER])
    searcher = workers.two.searcher
    assert isinstance(searcher, HybridSearcher)
    workers.two.search_memories(user, "zanzibar", 10)
    workers.one.update_memory(ids[0], "We booked the Zanzibar trip", None, user)
    searcher.max_age = 0.0  # past ten ages: the refresh reads every payload again
    deadline = time.monotonic() + 30
    while "We booked the Zanzibar trip" not in _ranked(workers.two.search_memories(user, "zanzibar", 10)):
        assert time.monotonic() < deadline, "worker two never saw the rewrite"
        time.sleep(0.2)


def test_another_worker_never_returns_a_deleted_memory_and_returns_the_current_text(workers: Workers) -> None:
    user = _user()
    ids = _add(workers.one, user, [*FILLER[:20], OKAFOR, "Okafor moved his practice to Elm Street"])
    assert OKAFOR in _ranked(workers.two.search_memories(user, "Okafor", 10))
    workers.one.delete_memory(ids[20], user)
    workers.one.update_memory(ids[21], "Okafor retired last spring", None, user)
    results = workers.two.search_memories(user, "Okafor", 10)
    assert OKAFOR not in _ranked(results)
    assert "Okafor retired last spring" in _ranked(results)
    assert "Okafor moved his practice to Elm Street" not in _ranked(results)


def test_this_worker_sees_its_own_writes_at_once(workers: Workers) -> None:
    user = _user()
    ids = _add(workers.one, user, [*FILLER, "Zanzibar is where we honeymooned"])
    assert _ranked(workers.one.search_memories(user, "zanzibar", 1)) == ["Zanzibar is where we honeymooned"]
    workers.one.delete_memory(ids[-1], user)
    assert "Zanzibar is where we honeymooned" not in _ranked(workers.one.search_memories(user, "zanzibar", 10))
    workers.one.delete_user_memories(user)
    assert workers.one.search_memories(user, "zanzibar", 10) == []


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


def test_conversation_context_through_the_store(workers: Workers, embedder: Embedder) -> None:
    """Turns written as one batch with their `seq`: an answer that shares no word with the question
    is found through the turn before it, which does."""
    user = _user()
    created = datetime.now(UTC).isoformat()
    texts = [*FILLER[:30], *VET_DISTRACTORS, *VET_CHAT]
    payloads = [
        {**_payload(text, created, seq), "user_id": user, "role": "user", "text_lemmatized": text}
        for seq, text in enumerate(texts)
    ]
    workers.memory.vector_store.insert(
        vectors=embedder.embed_batch(texts), ids=[str(uuid.uuid4()) for _ in texts], payloads=payloads
    )
    question, answer = "What did the vet say about Max's limp?", VET_CHAT[3]
    assert answer in _ranked(workers.one.search_memories(user, question, 4))
    searcher = workers.two.searcher
    assert isinstance(searcher, HybridSearcher)
    searcher.weights = replace(DEFAULT_WEIGHTS, context=0)
    assert answer not in _ranked(workers.two.search_memories(user, question, 5))


def test_dense_mode_is_plain_cosine_search(workers: Workers, embedder: Embedder) -> None:
    user = _user()
    _add(workers.one, user, [*FILLER[:10], OKAFOR])
    settings = workers.one.settings.model_copy()
    searcher = HybridSearcher(workers.memory, embedder, settings)
    searcher.mode = "dense"
    dense = searcher.search(user, QUERY, 5, None, None)
    plain = workers.plain.search_memories(user, QUERY, 5)
    assert [r.id for r in dense] == [r.id for r in plain]
    assert [r.score for r in dense] == pytest.approx([r.score for r in plain], abs=1e-5)


def test_concurrent_searches_build_one_consistent_index(workers: Workers) -> None:
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


# --- two workers with their own clients of a Chroma server ----------------------------------------
@pytest.fixture
def chroma_workers(
    chroma_server: Any,  # noqa: F811 - the fixture imported above
    embedder: Embedder,
) -> Iterator[tuple[MemoryService, MemoryService]]:
    """Two MemoryServices with separate Chroma clients, as two Function App instances have."""
    from shared.backends import build_memory
    from shared.history import build_history_store
    from shared.llm import build_chat_model

    collection = f"search-{uuid.uuid4().hex[:8]}"
    services = []
    for name in ("one", "two"):
        settings = _settings(chroma_server.root / name).model_copy(
            update={
                "vector_store": "chroma",
                "chroma_host": chroma_server.host,
                "chroma_port": chroma_server.port,
                "collection_name": collection,
            }
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings))
        services.append(MemoryService(memory, embedder, settings, HybridSearcher(memory, embedder, settings)))
    yield services[0], services[1]
    services[0].memory.vector_store.client.delete_collection(collection)


def test_on_chroma_workers_share_writes_deletes_and_rewrites(
    chroma_workers: tuple[MemoryService, MemoryService],
) -> None:
    one, two = chroma_workers
    user = _user()
    ids = _add(one, user, [*FILLER, OKAFOR, "Okafor moved his practice to Elm Street"])
    # the scores are cosine-based on Chroma too: the same ranking as on Qdrant
    first = two.search_memories(user, QUERY, 10)
    assert first[0].memory == OKAFOR
    assert all(r.score is not None and 0 <= r.score <= 1 for r in first)
    one.delete_memory(ids[60], user)
    one.update_memory(ids[61], "Okafor retired last spring", None, user)
    results = _ranked(two.search_memories(user, "Okafor", 10))  # both are keyword-only matches here
    assert OKAFOR not in results
    assert "Okafor retired last spring" in results
    assert "Okafor moved his practice to Elm Street" not in results
    assert {r.user_id for r in two.search_memories(user, QUERY, 10)} == {user}
