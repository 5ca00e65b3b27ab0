"""The Qdrant server adapter, run against qdrant-client's local mode, or a Qdrant server.

Local mode implements the server's REST models, the batch query with prefetch rescoring, sparse
vectors with the IDF modifier and a corpus-scoped idf, and `update_mode`, so every call the adapter
makes is exercised for real. The keyword analysis (tokenizer, stemmer, stop words) runs in the
worker (`qdrant_edge.Bm25`), so it is the same in local mode and on a server.

    QDRANT_TEST_URL=http://localhost:6333 pytest tests/integration/test_store_qdrant.py

runs the same tests against a server (1.19.0 or later): each test's collections are deleted after it.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from shared.ai.embeddings import Embedder, LocalEmbedder
from shared.contract import SearchFilters
from shared.errors import ConfigurationProblem
from shared.stores.vector.port import SEQ_KEY, TS_KEY, VectorStore
from shared.stores.vector.qdrant import QdrantServerStore
from tests.helpers import local_model_path

DIMS = 384
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SERVER = os.environ.get("QDRANT_TEST_URL")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", local_model_path(), DIMS, 1)


def new_client(folder: Path) -> QdrantClient:
    """A client of the test server when QDRANT_TEST_URL is set, else local mode on disk in `folder`
    (as a deployment would be, so persistence of the collection's layout is exercised too)."""
    return QdrantClient(url=SERVER, timeout=60) if SERVER else QdrantClient(path=str(folder))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[QdrantClient]:
    qdrant = new_client(tmp_path / "qdrant")
    before = {c.name for c in qdrant.get_collections().collections}
    yield qdrant
    if SERVER:  # leave the server as the test found it
        for collection in qdrant.get_collections().collections:
            if collection.name not in before:
                qdrant.delete_collection(collection.name)
    qdrant.close()


@pytest.fixture
def store(client: QdrantClient) -> QdrantServerStore:
    return QdrantServerStore(client, "memories", DIMS)


def _payload(user: str, text: str, when: datetime = T0, **metadata: Any) -> dict[str, Any]:
    return {"user_id": user, "data": text, "hash": str(hash(text)), "created_at": when.isoformat(), **metadata}


def _add(store: QdrantServerStore, embedder: Embedder, user: str, texts: list[str], **metadata: Any) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in texts]
    store.insert(embedder.embed_batch(texts), [_payload(user, t, **metadata) for t in texts], ids)
    return ids


def _cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- setup -------------------------------------------------------------------------------------
def test_collection_setup_is_idempotent_and_checks_dims(client: QdrantClient, store: QdrantServerStore) -> None:
    assert isinstance(store, VectorStore)
    assert store.kind == "qdrant" and store.local == (SERVER is None)
    again = QdrantServerStore(client, "memories", DIMS)  # a second worker on the same collection
    assert again.ping()["status"] == "ok"
    with pytest.raises(ConfigurationProblem, match="384-dimension"):
        QdrantServerStore(client, "memories", 768)


def test_a_collection_records_its_embedding_model_and_refuses_another_on_its_memories(client: QdrantClient) -> None:
    empty = QdrantServerStore(client, "models", DIMS, embedding_model="model-a")
    QdrantServerStore(client, "models", DIMS, embedding_model="model-b")  # nothing stored yet: b is recorded
    assert client.get_collection("models").config.metadata["embedding_model"] == "model-b"
    empty.insert([[1.0] + [0.0] * (DIMS - 1)], [_payload("alice", "x")], [str(uuid.uuid4())])
    QdrantServerStore(client, "models", DIMS, embedding_model="model-b")  # the same model: fine
    with pytest.raises(ConfigurationProblem, match="embedded with model-b, but the configured embedder is model-a"):
        QdrantServerStore(client, "models", DIMS, embedding_model="model-a")
    QdrantServerStore(client, "models", DIMS)  # a tool copying vectors as stored checks nothing


def test_collection_calls_fetch_and_ping(store: QdrantServerStore) -> None:
    one = str(uuid.uuid4())
    store.insert([[1.0] + [0.0] * (DIMS - 1)], [_payload("alice", "x")], [one])
    assert store.fetch([one, str(uuid.uuid4())]) == {one: store.fetch([one])[one]}
    assert store.fetch([]) == {}
    assert "memories" in {c.name for c in store.list_cols().collections}
    assert store.col_info().points_count == 1
    store.reset()  # mem0's reset: empty, and ready for writes again
    assert store.count_user("alice") == 0 and store.col_info().points_count == 0
    store.insert([[1.0] + [0.0] * (DIMS - 1)], [_payload("alice", "y")])
    assert [h.payload[SEQ_KEY] for h in store.list_user("alice")] == [0]
    store.delete_col()
    with pytest.raises((ValueError, UnexpectedResponse), match=r"(?i)not found|doesn.t exist"):  # server: a 404
        store.ping()


# --- writes ------------------------------------------------------------------------------------
def test_insert_get_update_keep_seq_and_ts(store: QdrantServerStore, embedder: Embedder) -> None:
    ids = _add(store, embedder, "alice", ["I like tea", "I live in Lisbon", "My cat is Tom"])
    hits = [store.get(i) for i in ids]
    assert [h.payload[SEQ_KEY] for h in hits if h] == [0, 1, 2]
    assert all(h and h.payload[TS_KEY] == T0.timestamp() and h.id == i for h, i in zip(hits, ids, strict=True))
    assert store.get(str(uuid.uuid4())) is None

    # mem0 rebuilds the payload on update, without the derived fields
    rebuilt = _payload("alice", "I live in Porto now")
    store.update(ids[1], vector=embedder.embed("I live in Porto now"), payload=rebuilt)
    moved = store.get(ids[1])
    assert moved and moved.payload["data"] == "I live in Porto now"
    assert moved.payload[SEQ_KEY] == 1 and moved.payload[TS_KEY] == T0.timestamp()
    store.update(ids[2], payload=_payload("alice", "My cat is called Tom"))  # payload only
    cat = store.get(ids[2])
    assert cat and cat.payload[SEQ_KEY] == 2 and cat.payload["data"] == "My cat is called Tom"

    # vector only: the payload stays, the vector changes
    porto = embedder.embed("Porto, Portugal")
    store.update(ids[0], vector=porto)
    tea = store.get(ids[0])
    assert tea and tea.payload["data"] == "I like tea" and tea.payload[SEQ_KEY] == 0
    [only] = store.neighbours("alice", [0], porto)
    assert only.semantic == pytest.approx(1.0, abs=1e-5)

    store.delete(ids[0])
    assert store.get(ids[0]) is None and store.count_user("alice") == 2


def test_seq_is_contiguous_per_user_across_calls(store: QdrantServerStore) -> None:
    def batch(users: list[str]) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in users]
        store.insert([[1.0] + [0.0] * (DIMS - 1)] * len(users), [_payload(u, f"m {u}") for u in users], ids)
        return ids

    first = batch(["alice", "bob", "alice"])
    second = batch(["bob", "alice", "alice "])
    seqs = store.fetch(first + second)
    assert [seqs[i][SEQ_KEY] for i in first] == [0, 0, 1]
    assert [seqs[i][SEQ_KEY] for i in second] == [1, 2, 0]
    # a payload without a user gets no write position
    loose = str(uuid.uuid4())
    store.insert([[0.0, 1.0] + [0.0] * (DIMS - 2)], [{"data": "agent note", "agent_id": "a"}], [loose])
    assert SEQ_KEY not in store.fetch([loose])[loose]


def test_concurrent_inserts_of_one_user_get_distinct_seqs(store: QdrantServerStore) -> None:
    vector = [1.0] + [0.0] * (DIMS - 1)

    def writer(n: int) -> None:
        for k in range(5):
            store.insert([vector, vector], [_payload("alice", f"w{n}-{k}-a"), _payload("alice", f"w{n}-{k}-b")])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = sorted(hit.payload[SEQ_KEY] for hit in store.list_user("alice"))
    assert seqs == list(range(40))


# --- reads, isolation --------------------------------------------------------------------------
def test_list_and_count_isolate_look_alike_users(store: QdrantServerStore, embedder: Embedder) -> None:
    alice = _add(store, embedder, "alice", [f"alice fact {i}" for i in range(300)])
    spaced = _add(store, embedder, "alice ", ["a spaced alice fact"])
    assert store.count_user("alice") == 300 and store.count_user("alice ") == 1 and store.count_user("Alice") == 0
    listed = store.list_user("alice")  # more than a scroll page: paging happens in the engine
    assert {h.id for h in listed} == set(alice) and all(h.payload["user_id"] == "alice" for h in listed)
    assert len(store.list_user("alice", limit=7)) == 7
    assert [h.id for h in store.list_user("alice ")] == spaced
    [mem0_list] = store.list(filters={"user_id": "alice "}, top_k=100)
    assert [h.id for h in mem0_list] == spaced
    assert len(store.list(filters={"user_id": "alice"}, top_k=50)[0]) == 50
    assert len(store.list(filters={"user_id": "alice"})[0]) == 300


def test_mem0_search_and_filters(store: QdrantServerStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["I love green tea"], category="food", flag=True)
    _add(store, embedder, "alice", ["I drink black tea"], category="food", flag=1, level=2)
    _add(store, embedder, "alice", ["Tea ceremonies bore me"], category="hobby", level=2.0)
    _add(store, embedder, "bob", ["I love green tea"], category="food", flag=True)
    query = embedder.embed("tea")

    def texts(filters: dict[str, Any]) -> set[str]:
        return {h.payload["data"] for h in store.search("tea", query, top_k=10, filters=filters)}

    found = store.search("tea", query, top_k=10, filters={"user_id": "alice"})
    assert len(found) == 3 and all(h.payload["user_id"] == "alice" for h in found)
    assert found[0].score == pytest.approx(_cos(query, embedder.embed(found[0].payload["data"])), abs=1e-4)
    assert texts({"user_id": "alice", "flag": True}) == {"I love green tea"}  # True is not 1
    assert texts({"user_id": "alice", "flag": 1}) == {"I drink black tea"}
    assert texts({"user_id": "alice", "level": 2}) == {"I drink black tea", "Tea ceremonies bore me"}  # 2 == 2.0
    assert texts({"user_id": "alice", "category": {"in": ["hobby"]}}) == {"Tea ceremonies bore me"}
    assert texts({"user_id": "alice", "category": {"ne": "food"}}) == {"Tea ceremonies bore me"}
    assert texts({"user_id": "alice", "category": {"in": []}}) == set()
    assert texts({"user_id": "alice", "level": {"gte": 2}}) == {"I drink black tea", "Tea ceremonies bore me"}
    with pytest.raises(ValueError, match="logical"):
        texts({"user_id": "alice", "OR": [{"category": "food"}]})

    keyword = store.keyword_search("green", top_k=5, filters={"user_id": "alice"})
    assert keyword is not None and [h.payload["data"] for h in keyword] == ["I love green tea"]
    assert keyword[0].score and keyword[0].score > 0


# --- candidates --------------------------------------------------------------------------------
PLACES = ["the dentist", "the eye doctor", "the physiotherapist", "my GP", "the dermatologist", "the allergist"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
FILLER = [f"I have an appointment with {place} on {day}" for place in PLACES for day in DAYS]
OKAFOR = "Okafor fixed my chipped tooth and was very gentle"
QUERY = "When is my appointment with Dr. Okafor?"


def test_candidates_find_a_keyword_only_hit_with_its_cosine(store: QdrantServerStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", FILLER)
    [okafor] = _add(store, embedder, "alice", [OKAFOR])
    query = embedder.embed(QUERY)
    dense_only = store.search(QUERY, query, top_k=10, filters={"user_id": "alice"})
    assert okafor not in {h.id for h in dense_only}  # far in meaning: not among the 10 nearest

    found = store.candidates("alice", query, QUERY, 10, None)
    by_id = {c.id: c for c in found.items}
    assert okafor in by_id
    hit = by_id[okafor]
    assert hit.keyword > 0
    assert hit.semantic == pytest.approx(_cos(query, embedder.embed(OKAFOR)), abs=1e-4)
    # dense hits carry the engine's cosine, and BM25 where they also hold query words
    for item in found.items:
        assert item.semantic == pytest.approx(_cos(query, embedder.embed(item.payload["data"])), abs=1e-4)
    # local mode has no stop words: "my", "with", "appointment" match every filler, so the keyword
    # side is full and not exhaustive
    assert not found.keyword_exhaustive
    rare = store.candidates("alice", query, "Okafor", 10, None)
    assert rare.keyword_exhaustive and [c.id for c in rare.items if c.keyword > 0] == [okafor]


def test_candidates_respect_filters_on_both_sides(store: QdrantServerStore, embedder: Embedder) -> None:
    texts = [f"note about the garden number {i}" for i in range(8)]
    ids = [str(uuid.uuid4()) for _ in texts]
    payloads = [
        _payload(
            "alice",
            t,
            when=T0 + timedelta(days=i),
            category="plants" if i % 2 else "tools",
            room="yard" if i < 4 else "shed",
            flag=(i == 3),
        )
        for i, t in enumerate(texts)
    ]
    store.insert(embedder.embed_batch(texts), payloads, ids)
    query = embedder.embed("garden")

    def check(filters: SearchFilters, expected: set[int]) -> None:
        found = store.candidates("alice", query, "garden", 20, filters)
        got = {ids.index(c.id) for c in found.items}
        assert got == expected
        # every memory holds "garden": the keyword side alone returns the same set
        assert {ids.index(c.id) for c in found.items if c.keyword > 0} == expected

    check(SearchFilters(metadata={"room": "yard"}), {0, 1, 2, 3})
    check(SearchFilters(metadata={"flag": True}), {3})
    check(SearchFilters(metadata={"flag": 1}), set())  # a bool is not the number 1
    check(SearchFilters(categories=["plants"]), {1, 3, 5, 7})
    check(SearchFilters(created_after=T0 + timedelta(days=5)), {5, 6, 7})  # at or after
    check(SearchFilters(created_before=T0 + timedelta(days=2)), {0, 1})  # strictly before
    check(
        SearchFilters(
            metadata={"room": "shed"},
            categories=["tools", "plants"],
            created_after=T0 + timedelta(days=5),
            created_before=T0 + timedelta(days=7),
        ),
        {5, 6},
    )


def test_candidates_never_return_another_users_memory(store: QdrantServerStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["I enjoy long walks", "My sister lives in Oslo"])
    bob = _add(store, embedder, "bob", [OKAFOR])
    spaced = _add(store, embedder, "alice ", [OKAFOR])
    query = embedder.embed(OKAFOR)  # bob's and "alice "'s memory is the exact match
    found = store.candidates("alice", query, OKAFOR, 10, None)
    assert found.items and all(c.payload["user_id"] == "alice" for c in found.items)
    assert not {c.id for c in found.items} & set(bob + spaced)
    assert store.candidates("nobody", query, OKAFOR, 10, None).items == []


def test_neighbours_return_exactly_the_asked_seqs(store: QdrantServerStore, embedder: Embedder) -> None:
    texts = [f"day {i} of the trip" for i in range(6)]
    ids = _add(store, embedder, "alice", texts)
    _add(store, embedder, "bob", texts)  # bob's seqs 0..5 too
    query = embedder.embed("trip")
    near = store.neighbours("alice", [4, 1, 1, 9], query)
    assert [c.id for c in near] == [ids[1], ids[4]]
    assert [c.payload[SEQ_KEY] for c in near] == [1, 4]
    assert all(c.keyword == 0.0 and c.payload["user_id"] == "alice" for c in near)
    assert near[0].semantic == pytest.approx(_cos(query, embedder.embed(texts[1])), abs=1e-4)
    assert store.neighbours("alice", [], query) == []
    assert [c.id for c in store.neighbours("alice", [np.int64(5)], query)] == [ids[5]]  # numpy ints too


def test_chinese_keyword_side(store: QdrantServerStore, embedder: Embedder) -> None:
    """The Multilingual tokenizer segments Chinese (编程语言偏好 -> 编程 / 语言 / 偏好), so the Python
    memory is the one keyword candidate, through 偏好; the analysis runs in the worker, so local
    mode and a server agree."""
    python, coffee, hours = _add(
        store, embedder, "alice", ["用户偏好使用Python进行数据分析", "喜欢早上喝咖啡", "工作时间是9-17点"]
    )
    query = embedder.embed("编程语言偏好")
    found = store.candidates("alice", query, "编程语言偏好", 10, None)
    assert {c.id for c in found.items} == {python, coffee, hours}  # dense side: all three
    assert [c.id for c in found.items if c.keyword > 0] == [python] and found.keyword_exhaustive
    # 喜欢早上喝咖啡 is 喜欢 / 早上 / 喝咖啡: a word of it finds it (咖啡 alone is not one of its words)
    assert [c.id for c in store.candidates("alice", query, "早上", 10, None).items if c.keyword > 0] == [coffee]
    # Latin words inside a Chinese run are words of their own
    assert [c.id for c in store.candidates("alice", query, "python", 10, None).items if c.keyword > 0] == [python]


def test_keyword_analysis_stems_and_drops_stop_words(store: QdrantServerStore, embedder: Embedder) -> None:
    dogs, paint, _ = _add(
        store, embedder, "alice", ["She likes hiking with her dogs", "We painted the fence", "The weather was fine"]
    )

    def keyword_hits(text: str) -> list[str]:
        return [c.id for c in store.candidates("alice", embedder.embed(text), text, 10, None).items if c.keyword > 0]

    assert keyword_hits("like dog") == [dogs]
    assert keyword_hits("paintings") == [paint]  # paintings = painted = paint
    assert keyword_hits("the and with") == []  # stop words only: no keyword side at all
    nothing = store.candidates("alice", embedder.embed("the and with"), "the and with", 10, None)
    assert nothing.keyword_ceiling == 0.0 and nothing.keyword_exhaustive
    assert keyword_hits("When did she go hiking?") == [dogs]  # question words are stop words too


def test_idf_and_ceiling_are_the_users_own(store: QdrantServerStore, embedder: Embedder) -> None:
    """BM25's idf counts the user's memories only: another user's hundred memories holding a word do
    not make it common for alice. The ceiling is the sum of the best score each query word reaches
    among alice's memories, so no candidate's keyword score exceeds it and one holding every word
    as strongly as any of her memories reaches it."""
    texts = ["Okafor fixed my tooth", "The tooth fairy visited", "I met Okafor at the dentist", "Lunch was pasta"]
    ids = _add(store, embedder, "alice", texts)
    query_text = "Okafor tooth"
    query = embedder.embed(query_text)
    alone = store.candidates("alice", query, query_text, 10, None)
    _add(store, embedder, "bob", [f"Okafor note {i}" for i in range(100)])  # "okafor" is common for bob only
    crowded = store.candidates("alice", query, query_text, 10, None)
    assert {c.id: c.keyword for c in crowded.items} == pytest.approx({c.id: c.keyword for c in alone.items})
    assert crowded.keyword_ceiling == pytest.approx(alone.keyword_ceiling)

    by_id = {c.id: c for c in alone.items}
    assert by_id[ids[3]].keyword == 0.0 and all(by_id[i].keyword > 0 for i in ids[:3])
    single = store.candidates("alice", query, "Okafor", 10, None)
    assert single.keyword_ceiling == pytest.approx(max(c.keyword for c in single.items))
    tooth_best = max(c.keyword for c in store.candidates("alice", query, "tooth", 10, None).items)
    assert alone.keyword_ceiling == pytest.approx(single.keyword_ceiling + tooth_best)
    # the first memory holds both words in a short text: it reaches the ceiling
    assert by_id[ids[0]].keyword == pytest.approx(alone.keyword_ceiling)
    assert all(c.keyword <= alone.keyword_ceiling + 1e-6 for c in alone.items)


class CountingClient:
    """A client that counts the calls that reach the engine (one call, one round trip on a server)."""

    def __init__(self, inner: QdrantClient) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return call


def test_a_search_is_two_round_trips(client: QdrantClient, embedder: Embedder) -> None:
    """Candidates with their cosines, BM25 and the keyword ceiling in one batch, whatever the query;
    the context neighbours in one more. (The adapter before sparse vectors took 3 + 1 per query
    word for the candidates, 2 for the neighbours: 8 for QUERY, whose words are appointment, dr
    and okafor.)"""
    from shared.search.hybrid import HybridSearcher

    counting = CountingClient(client)
    store = QdrantServerStore(counting, "memories", DIMS)  # type: ignore[arg-type]
    _add(store, embedder, "alice", [*[f"note {i} about the garden" for i in range(200)], *FILLER, OKAFOR])
    searcher = HybridSearcher(store, embedder, SimpleNamespace(search_mode="hybrid"))  # type: ignore[arg-type]
    for text in (QUERY, "Okafor", "the and with", "May 2024 dentist Friday"):
        counting.calls.clear()
        assert searcher.search("alice", text, 5, None, None)
        assert counting.calls == ["query_batch_points", "query_batch_points"], (text, counting.calls)


class RacingClient(CountingClient):
    """A delete of `victim` reaches the engine right after the adapter's next read."""

    def __init__(self, inner: QdrantClient) -> None:
        super().__init__(inner)
        self.victim: str | None = None

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        records = self.inner.retrieve(*args, **kwargs)
        if self.victim is not None:
            self.inner.delete("memories", points_selector=models.PointIdsList(points=[self.victim]), wait=True)
            self.victim = None
        return records


def test_update_never_brings_back_a_deleted_memory(client: QdrantClient, embedder: Embedder) -> None:
    """mem0's update reads the memory, then writes it; a delete landing in between wins."""
    racing_client = RacingClient(client)
    store = QdrantServerStore(racing_client, "memories", DIMS)  # type: ignore[arg-type]
    [kept, racing] = _add(store, embedder, "alice", ["I like tea", "I live in Lisbon"])

    racing_client.victim = racing
    store.update(racing, vector=embedder.embed("I live in Porto"), payload=_payload("alice", "I live in Porto"))
    assert store.get(racing) is None and store.count_user("alice") == 1

    # every form of update on an id already gone is a no-op
    store.update(racing, payload=_payload("alice", "back?"))
    store.update(racing, vector=embedder.embed("back?"))
    assert store.get(racing) is None and store.fetch([racing]) == {}
    # and a live memory is rewritten, keyword vector included
    store.update(kept, payload=_payload("alice", "I like coffee"))
    found = store.candidates("alice", embedder.embed("coffee"), "coffee", 5, None)
    assert [c.id for c in found.items if c.keyword > 0] == [kept]
    assert store.candidates("alice", embedder.embed("tea"), "tea", 5, None).keyword_ceiling == 0.0


# --- layout, version, migration ----------------------------------------------------------------
def _old_layout(client: QdrantClient, name: str) -> None:
    """A collection as the adapter before sparse vectors made it: dense vector and a BM25 text index."""
    client.create_collection(name, vectors_config=models.VectorParams(size=DIMS, distance=models.Distance.COSINE))
    text_index = models.TextIndexParams(
        type=models.TextIndexType.TEXT,
        tokenizer=models.TokenizerType.WORD,
        lowercase=True,
        scoring=models.TextScoringParams(type=models.TextScoringType.BM25),
    )
    client.create_payload_index(name, field_name="data", field_schema=text_index, wait=True)


def test_an_old_layout_is_refused_then_migrated_in_place(client: QdrantClient, embedder: Embedder) -> None:
    from shared.stores.vector.qdrant.migrate import upgrade_collection

    _old_layout(client, "memories")
    texts = [*FILLER, OKAFOR, "the and with"]  # the last holds no indexed word
    ids = [str(uuid.uuid4()) for _ in texts]
    vectors = embedder.embed_batch(texts)
    payloads = [{**_payload("alice", t), SEQ_KEY: i, TS_KEY: T0.timestamp()} for i, t in enumerate(texts)]
    client.upsert(
        "memories",
        points=[models.PointStruct(id=i, vector=v, payload=p) for i, v, p in zip(ids, vectors, payloads, strict=True)],
        wait=True,
    )
    with pytest.raises(ConfigurationProblem, match=r"python -m tools\.ops\.migrate_store"):
        QdrantServerStore(client, "memories", DIMS)
    with pytest.raises(ConfigurationProblem, match="384-dimension"):
        upgrade_collection(client, "memories", 768)  # the wrong embedder: nothing is touched

    # an interrupted run: the vector was added, a few memories got theirs, the layout mark is missing
    client.create_vector_name(
        "memories", "data_bm25", models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier="idf"))
    )
    with pytest.raises(ConfigurationProblem, match="did not finish"):
        QdrantServerStore(client, "memories", DIMS)

    assert upgrade_collection(client, "memories", DIMS) == len(texts) - 1
    info = client.get_collection("memories")
    assert "data" not in (info.payload_schema or {})  # the full-text index is gone
    store = QdrantServerStore(client, "memories", DIMS)
    assert store.count_user("alice") == len(texts)
    found = store.candidates("alice", embedder.embed(QUERY), QUERY, 10, None)
    assert ids[-2] in {c.id for c in found.items if c.keyword > 0}  # Okafor, by keyword
    assert store.get(ids[0]).payload[SEQ_KEY] == 0  # type: ignore[union-attr]  # payloads untouched
    assert upgrade_collection(client, "memories", DIMS) == 0  # a re-run has nothing left to do


def test_migrate_store_runs_the_server_migration(
    client: QdrantClient, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m tools.ops.migrate_store` with QDRANT_URL set migrates the server's collection."""
    from tools.ops import migrate_store

    _old_layout(client, "memories")
    one = str(uuid.uuid4())
    client.upsert(
        "memories",
        points=[models.PointStruct(id=one, vector=embedder.embed(OKAFOR), payload=_payload("alice", OKAFOR))],
    )
    unclosed = CountingClient(client)
    unclosed.close = lambda: None  # type: ignore[method-assign]  # the fixture closes it
    monkeypatch.setattr(migrate_store, "qdrant_server_client", lambda settings: unclosed)
    monkeypatch.setenv("QDRANT_URL", SERVER or "http://qdrant.invalid:6333")
    monkeypatch.setenv("COLLECTION_NAME", "memories")
    from shared.settings import get_settings

    get_settings.cache_clear()
    try:
        assert migrate_store.main([]) == 0
    finally:
        get_settings.cache_clear()
    store = QdrantServerStore(client, "memories", DIMS)
    assert [c.id for c in store.candidates("alice", embedder.embed("Okafor"), "Okafor", 5, None).items] == [one]


class _OldServer:
    """What the adapter reads of a server before it touches a collection."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.init_options = {"url": "http://qdrant.example:6333"}
        self.touched = False

    def info(self) -> models.VersionInfo:
        return models.VersionInfo(title="qdrant - vector search engine", version=self.version)

    def __getattr__(self, name: str) -> Any:
        self.touched = True
        raise AssertionError(f"the adapter went on to call {name} on a refused server")


@pytest.mark.parametrize("version", ["1.18.2", "1.13.0", "v1.17.0"])
def test_a_server_older_than_1_19_is_refused(version: str) -> None:
    old = _OldServer(version)
    with pytest.raises(ConfigurationProblem, match=rf"version {version}; this service needs 1\.19\.0 or later"):
        QdrantServerStore(old, "memories", DIMS)  # type: ignore[arg-type]
    assert not old.touched


def test_the_server_version_is_read_once_at_start(client: QdrantClient) -> None:
    counting = CountingClient(client)
    store = QdrantServerStore(counting, "memories", DIMS)  # type: ignore[arg-type]
    if SERVER:
        assert counting.calls.count("info") == 1 and store.server_version
    else:
        assert "info" not in counting.calls and store.server_version is None  # local mode has no server


# --- mem0 on the adapter -----------------------------------------------------------------------
def test_mem0_memory_works_on_the_adapter(tmp_path: Path, embedder: Embedder) -> None:
    from shared.ai.backends import build_memory, prepare_mem0_environment
    from shared.ai.llm import build_chat_model
    from shared.settings import Settings
    from shared.stores.state.history import build_history_store

    settings = Settings(
        data_dir=tmp_path / "data",
        vector_store="qdrant",
        qdrant_url=None,
        local_embedding_model_path=local_model_path(),
        local_embedding_threads=1,
        state_store="local",
        llm_provider="none",
        embedding_provider="local",
    )
    prepare_mem0_environment(settings)
    qdrant = QdrantClient(path=str(tmp_path / "adapter"))
    store = QdrantServerStore(qdrant, "memories", DIMS)
    memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings), store)
    try:
        first = memory.add("I moved to Lisbon in March", user_id="alice", infer=False)["results"][0]
        second = memory.add("My favourite food is ramen", user_id="alice", infer=False)["results"][0]
        memory.add("Bob's note", user_id="bob", infer=False)
        got = memory.get(first["id"])
        assert got["memory"] == "I moved to Lisbon in March"
        stored = memory.vector_store.get(first["id"])
        assert stored.payload[SEQ_KEY] == 0 and memory.vector_store.get(second["id"]).payload[SEQ_KEY] == 1

        memory.update(first["id"], "I moved to Porto in March")
        assert memory.get(first["id"])["memory"] == "I moved to Porto in March"
        assert memory.vector_store.get(first["id"]).payload[SEQ_KEY] == 0  # kept through mem0's rebuild
        listed = memory.get_all(filters={"user_id": "alice"})["results"]
        assert {m["id"] for m in listed} == {first["id"], second["id"]}
        searched = memory.search("Which city did I move to?", filters={"user_id": "alice"}, top_k=1)["results"]
        assert [m["id"] for m in searched] == [first["id"]]

        memory.delete(second["id"])
        assert memory.get(second["id"]) is None
        assert memory.vector_store.count_user("alice") == 1
    finally:
        memory.vector_store.close()
