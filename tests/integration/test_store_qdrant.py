"""What only the Qdrant server adapter does, run against qdrant-client's local mode, or a Qdrant server:
its collection's layout and metadata, the server's version, round trips, migrations, BM25's ceiling.
What every adapter does is in test_store_contract.py.

Local mode implements the server's REST models, the batch query with prefetch rescoring, sparse
vectors with the IDF modifier and a corpus-scoped idf, and `update_mode`, so every call the adapter
makes is exercised for real. The keyword analysis (tokenizer, stemmer, stop words) runs in the
worker (`qdrant_edge.Bm25`), so it is the same in local mode and on a server.

    QDRANT_TEST_URL=http://localhost:6333 pytest tests/integration/test_store_{qdrant,contract}.py

runs these tests against a server (1.19.0 or later), and adds it to the contract's engines: each
test's collections are deleted after it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from shared.ai.embeddings import Embedder, LocalEmbedder
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


def test_mem0s_collection_calls(store: QdrantServerStore) -> None:
    store.insert([[1.0] + [0.0] * (DIMS - 1)], [_payload("alice", "x")], [str(uuid.uuid4())])
    assert "memories" in {c.name for c in store.list_cols().collections}
    assert store.col_info().points_count == 1
    store.reset()
    assert store.col_info().points_count == 0
    store.delete_col()
    with pytest.raises((ValueError, UnexpectedResponse), match=r"(?i)not found|doesn.t exist"):  # server: a 404
        store.ping()


# --- mem0's calls ------------------------------------------------------------------------------
def test_a_payload_without_a_user_gets_no_write_position(store: QdrantServerStore) -> None:
    loose = str(uuid.uuid4())
    store.insert([[0.0, 1.0] + [0.0] * (DIMS - 2)], [{"data": "agent note", "agent_id": "a"}], [loose])
    assert SEQ_KEY not in store.fetch([loose])[loose]


def test_mem0s_search_refuses_a_logical_filter(store: QdrantServerStore) -> None:
    with pytest.raises(ValueError, match="logical"):
        store.search("tea", [1.0] + [0.0] * (DIMS - 1), top_k=10, filters={"user_id": "a", "OR": [{"category": "x"}]})


def test_mem0s_keyword_search(store: QdrantServerStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["I love green tea", "I drink black tea"])
    _add(store, embedder, "bob", ["I love green tea"])
    keyword = store.keyword_search("green", top_k=5, filters={"user_id": "alice"})
    assert keyword is not None and [h.payload["data"] for h in keyword] == ["I love green tea"]
    assert keyword[0].score and keyword[0].score > 0


# --- candidates --------------------------------------------------------------------------------
PLACES = ["the dentist", "the eye doctor", "the physiotherapist", "my GP", "the dermatologist", "the allergist"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
FILLER = [f"I have an appointment with {place} on {day}" for place in PLACES for day in DAYS]
OKAFOR = "Okafor fixed my chipped tooth and was very gentle"
QUERY = "When is my appointment with Dr. Okafor?"


def test_neighbours_come_in_write_order(store: QdrantServerStore, embedder: Embedder) -> None:
    ids = _add(store, embedder, "alice", [f"day {i} of the trip" for i in range(6)])
    assert [c.id for c in store.neighbours("alice", [4, 1, 1, 9], embedder.embed("trip"))] == [ids[1], ids[4]]


def test_a_query_of_stop_words_has_no_keyword_scale(store: QdrantServerStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["She likes hiking with her dogs", "We painted the fence"])
    nothing = store.candidates("alice", embedder.embed("the and with"), "the and with", 10, None)
    assert nothing.keyword_ceiling == 0.0 and nothing.keyword_exhaustive


def test_the_ceiling_sums_each_query_words_best_score(store: QdrantServerStore, embedder: Embedder) -> None:
    """The ceiling is the sum of the best score each query word reaches among the user's memories, so
    one holding every word as strongly as any of her memories reaches it. (That another user's
    memories change neither is in test_store_contract.py.)"""
    texts = ["Okafor fixed my tooth", "The tooth fairy visited", "I met Okafor at the dentist", "Lunch was pasta"]
    ids = _add(store, embedder, "alice", texts)
    query = embedder.embed("Okafor tooth")
    alone = store.candidates("alice", query, "Okafor tooth", 10, None)
    single = store.candidates("alice", query, "Okafor", 10, None)
    assert single.keyword_ceiling == pytest.approx(max(c.keyword for c in single.items))
    tooth_best = max(c.keyword for c in store.candidates("alice", query, "tooth", 10, None).items)
    assert alone.keyword_ceiling == pytest.approx(single.keyword_ceiling + tooth_best)
    # the first memory holds both words in a short text: it reaches the ceiling
    assert {c.id: c for c in alone.items}[ids[0]].keyword == pytest.approx(alone.keyword_ceiling)


class CountingClient:
    """A client that counts the calls that reach the engine (one call, one round trip on a server)."""

    def __init__(self, inner: QdrantClient) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name == "_client":  # the client's transport, which the adapter's batches go to (qdrant/client.py)
            transport = CountingClient(attribute)
            transport.calls = self.calls
            return transport
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
