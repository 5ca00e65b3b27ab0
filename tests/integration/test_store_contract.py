"""The vector-store port's contract (shared/stores/vector/port.py): what every adapter does, run on each
engine for real. Qdrant Edge in process on a shard on disk; the Qdrant adapter over qdrant-client's local
mode on disk, and also over a Qdrant server when QDRANT_TEST_URL names one (1.19.0 or later: each test's
collections are deleted after it); a Chroma server (tools/harness).

What only one engine does (its layout, migrations, locks, outages, its own scoring scale) is in
test_store_edge.py, test_store_qdrant.py and test_store_chroma.py.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.ai.embeddings import Embedder, LocalEmbedder
from shared.contract import SearchFilters
from shared.errors import ConfigurationProblem
from shared.scope import Scope
from shared.stores.vector.port import DAY_KEY, SEQ_KEY, TS_KEY, Tally, VectorStore
from tests.helpers import local_model_path

DIMS = 384
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
QDRANT_TEST_URL = os.environ.get("QDRANT_TEST_URL")
ENGINES = ["edge", "qdrant-local", "chroma", *(["qdrant-server"] if QDRANT_TEST_URL else [])]
PLACES = ["the dentist", "the eye doctor", "the physiotherapist", "my GP", "the dermatologist", "the allergist"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
FILLER = [f"I have an appointment with {place} on {day}" for place in PLACES for day in DAYS]
OKAFOR = "Okafor fixed my chipped tooth and was very gentle"
QUERY = "When is my appointment with Dr. Okafor?"


class Engine:
    """Opens one engine's adapter on collections of the test's own, and removes them afterwards."""

    def __init__(self, name: str, folder: Path, request: pytest.FixtureRequest) -> None:
        self.name = name
        self.kind = {"edge": "edge", "chroma": "chroma"}.get(name, "qdrant")
        self.folder = folder
        self.prefix = f"t-{uuid.uuid4().hex[:10]}-"
        self.opened: list[Any] = []
        self.client: Any = None
        if name == "chroma":
            import chromadb

            server = request.getfixturevalue("chroma_server")
            self.client = chromadb.HttpClient(host=server.host, port=server.port)
        elif name == "qdrant-server":
            from qdrant_client import QdrantClient

            self.client = QdrantClient(url=QDRANT_TEST_URL, timeout=60)
        elif name == "qdrant-local":
            from qdrant_client import QdrantClient

            # on disk, as a deployment is; local mode allows one client per folder: the stores share it
            self.client = QdrantClient(path=str(folder / "qdrant"))

    def open(self, collection: str = "memories", dims: int = DIMS) -> Any:
        """A worker's adapter on `collection` (the same collection each time it is named)."""
        name = f"{self.prefix}{collection}"
        if self.name == "edge":
            from shared.stores.vector.edge import EdgeVectorStore

            store: Any = EdgeVectorStore(self.folder / "edge" / collection, name, dims)
        elif self.name == "chroma":
            from shared.stores.vector.chroma import ChromaVectorStore

            store = ChromaVectorStore(self.client, name, dims)
        else:
            from shared.stores.vector.qdrant import QdrantServerStore

            store = QdrantServerStore(self.client, name, dims)
        self.opened.append(store)
        return store

    def reopen(self, store: Any, dims: int = DIMS) -> Any:
        """Another adapter on `store`'s collection, as a restarted worker opens it (the embedded shard
        has one owner: the first is closed)."""
        if self.name == "edge":
            store.close()
        return self.open(store.collection_name.removeprefix(self.prefix), dims)

    def cleanup(self) -> None:
        if self.name == "edge":
            for store in self.opened:
                store.close()
        elif self.name == "chroma":
            from shared.stores.vector.chroma import ChromaVectorStore

            for name in {store.collection_name for store in self.opened}:
                ChromaVectorStore(self.client, name, DIMS).delete_col()  # every collection of the store
            for store in self.opened:
                store.close()
        else:
            if self.name == "qdrant-server":
                for collection in self.client.get_collections().collections:
                    if collection.name.startswith(self.prefix):
                        self.client.delete_collection(collection.name)
            self.client.close()  # the adapters' close() is the client's


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    opened = Engine(request.param, tmp_path, request)
    yield opened
    opened.cleanup()


@pytest.fixture
def store(engine: Engine) -> VectorStore:
    opened: VectorStore = engine.open()
    return opened


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", local_model_path(), DIMS, 1)


@pytest.fixture(scope="module")
def mem0_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """mem0 reads its settings when first imported: the service's (no telemetry, its folder) first."""
    from shared.memory.mem0_engine import prepare_mem0_environment
    from shared.settings import Settings

    prepare_mem0_environment(Settings(data_dir=tmp_path_factory.mktemp("mem0"), llm_provider="none"))


def differs(
    request: pytest.FixtureRequest, engine: Engine, name: str, reason: str, raises: type[BaseException]
) -> None:
    """Marks the test as failing on engine `name` today with `raises`, for `reason`: a gap between the
    adapters that this contract found. Strict, so the mark must go once the adapter is fixed."""
    if engine.name == name:
        mark = pytest.mark.xfail(reason=f"{name} differs from the port: {reason}", raises=raises, strict=True)
        request.node.add_marker(mark)


def _payload(user: str, text: str, when: datetime = T0, **metadata: Any) -> dict[str, Any]:
    return {"user_id": user, "data": text, "hash": uuid.uuid4().hex, "created_at": when.isoformat(), **metadata}


def _add(store: VectorStore, embedder: Embedder, user: str, texts: list[str], **metadata: Any) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in texts]
    store.insert(embedder.embed_batch(texts), [_payload(user, t, **metadata) for t in texts], ids)
    return ids


def _axis(n: int) -> list[float]:
    vector = [0.0] * DIMS
    vector[n] = 1.0
    return vector


def _cos(a: Any, b: Any) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the adapter -------------------------------------------------------------------------------
def test_the_adapter_is_the_port_and_mem0s_vector_store(engine: Engine, store: VectorStore, mem0_ready: None) -> None:
    from mem0.vector_stores.base import VectorStoreBase

    assert isinstance(store, VectorStore) and store.kind == engine.kind
    missing = {name for name in VectorStoreBase.__abstractmethods__ if not callable(getattr(store, name, None))}
    assert not missing
    assert isinstance(store.ping(), dict)


def test_reopening_keeps_the_memories_and_the_write_order(engine: Engine, embedder: Embedder) -> None:
    first = engine.open()
    ids = _add(first, embedder, "alice", ["one", "two"])
    again = engine.reopen(first)
    assert again.count_user("alice") == 2 and again.get(ids[0]) is not None
    _add(again, embedder, "alice", ["three"])
    assert sorted(h.payload[SEQ_KEY] for h in again.list_user("alice")) == [0, 1, 2]


def test_another_embedders_size_is_refused_with_the_fix(engine: Engine, store: VectorStore) -> None:
    with pytest.raises(ConfigurationProblem, match="COLLECTION_NAME"):
        engine.reopen(store, dims=768)


# --- writes ------------------------------------------------------------------------------------
def test_insert_get_update_keep_seq_and_ts(store: VectorStore, embedder: Embedder) -> None:
    ids = _add(store, embedder, "alice", ["I like tea", "I live in Lisbon", "My cat is Tom"], category="life")
    hits = [store.get(i) for i in ids]
    assert [h.payload[SEQ_KEY] for h in hits if h] == [0, 1, 2]
    assert all(
        h and h.id == i and h.payload[TS_KEY] == pytest.approx(T0.timestamp()) for h, i in zip(hits, ids, strict=True)
    )
    assert store.get(str(uuid.uuid4())) is None

    # mem0's update rebuilds the payload, without the derived fields: they are carried over
    store.update(ids[1], vector=embedder.embed("I live in Porto now"), payload=_payload("alice", "I live in Porto now"))
    moved = store.get(ids[1])
    assert moved and moved.payload["data"] == "I live in Porto now"
    assert moved.payload[SEQ_KEY] == 1 and moved.payload[TS_KEY] == pytest.approx(T0.timestamp())
    store.update(ids[2], payload=_payload("alice", "My cat is called Tom"))  # payload only
    cat = store.get(ids[2])
    assert cat and cat.payload[SEQ_KEY] == 2 and cat.payload["data"] == "My cat is called Tom"

    # vector only: the payload stays as it was, the vector changes
    porto = embedder.embed("Porto, Portugal")
    before = store.get(ids[0])
    store.update(ids[0], vector=porto)
    tea = store.get(ids[0])
    assert tea and before and tea.payload == before.payload
    [only] = store.neighbours("alice", [0], porto)
    assert only.semantic == pytest.approx(1.0, abs=1e-5)

    store.delete(ids[0])
    assert store.get(ids[0]) is None and store.count_user("alice") == 2


def test_a_payload_only_rewrite_drops_keys_keeps_the_vector_and_indexes_the_new_words(
    store: VectorStore, embedder: Embedder
) -> None:
    vector = embedder.embed("music")
    [memory_id] = _add(store, embedder, "alice", ["I like jazz"], mood="calm")
    store.update(memory_id, vector=vector)
    old = store.get(memory_id)
    assert old is not None
    new = {k: v for k, v in old.payload.items() if k != "mood"} | {"data": "I like loud saxophone"}
    store.update(memory_id, payload=new)  # the text changed, no vector given
    hit = store.get(memory_id)
    assert hit is not None and "mood" not in hit.payload and hit.payload["data"] == "I like loud saxophone"
    found = store.candidates("alice", vector, "saxophone", 5, None)
    assert [c.id for c in found.items] == [memory_id]
    assert found.items[0].semantic == pytest.approx(1.0, abs=1e-5)  # the stored vector was kept
    assert found.items[0].keyword > 0  # the words follow the new text
    assert [c.keyword for c in store.candidates("alice", vector, "jazz", 5, None).items] == [0.0]  # the old are gone


def test_seq_is_contiguous_per_user_across_calls_and_users(store: VectorStore) -> None:
    def batch(users: list[str]) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in users]
        store.insert(
            [_axis(n) for n in range(len(users))], [_payload(u, f"m {u} {n}") for n, u in enumerate(users)], ids
        )
        return ids

    first = batch(["alice", "alice", "alice"])
    mixed = batch(["bob", "alice", "bob", "alice", "alice "])
    seqs = {memory_id: payload[SEQ_KEY] for memory_id, payload in store.fetch(first + mixed).items()}
    assert [seqs[m] for m in first] == [0, 1, 2]
    assert [seqs[m] for m in mixed] == [0, 3, 1, 4, 0]


def test_concurrent_writers_of_one_user_never_share_a_seq(store: VectorStore) -> None:
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for k in range(5):
                rows = [_payload("alice", f"w{n}-{k}-a"), _payload("alice", f"w{n}-{k}-b")]
                store.insert([_axis(n), _axis(n + 1)], rows, [str(uuid.uuid4()), str(uuid.uuid4())])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(hit.payload[SEQ_KEY] for hit in store.list_user("alice")) == list(range(40))


def test_no_update_brings_back_a_deleted_memory(store: VectorStore, embedder: Embedder) -> None:
    [memory_id] = _add(store, embedder, "alice", ["I like green tea"])
    store.delete(memory_id)
    # what mem0's update sends after it read the memory, when a delete won the race in between
    store.update(memory_id, embedder.embed("I like black tea"), _payload("alice", "I like black tea"))
    assert store.get(memory_id) is None and store.fetch([memory_id]) == {} and store.count_user("alice") == 0


def test_a_payload_or_vector_only_update_of_a_deleted_memory_is_a_no_op(store: VectorStore, embedder: Embedder) -> None:
    [memory_id] = _add(store, embedder, "alice", ["I like green tea"])
    store.delete(memory_id)
    store.update(memory_id, payload=_payload("alice", "back?"))
    store.update(memory_id, vector=embedder.embed("back?"))
    assert store.get(memory_id) is None and store.fetch([memory_id]) == {} and store.count_user("alice") == 0


def test_an_update_that_loses_a_race_with_a_delete_is_not_found(
    store: VectorStore, embedder: Embedder, tmp_path: Path
) -> None:
    from shared.contract import MemoryInput
    from shared.errors import NotFound
    from shared.factory import build_llm, build_session_store
    from shared.memory.mem0_engine import Mem0Engine
    from shared.memory.service import MemoryService
    from shared.search.hybrid import HybridSearcher
    from shared.settings import Settings
    from shared.stores.state.erasure import build_erasure_ledger
    from shared.stores.state.events import build_event_store
    from shared.stores.state.history import build_history_store

    settings = Settings(
        data_dir=tmp_path / "data",
        local_embedding_model_path=local_model_path(),
        state_store="local",
        llm_provider="none",
    )
    history, llm = build_history_store(settings), build_llm(settings)
    service = MemoryService(  # the service over this engine's store, assembled as the factory does
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
    [memory_id] = service.add_memories("alice", [MemoryInput(content="I like green tea")])
    checked = service.get_memory(memory_id, "alice")
    store.delete(memory_id)  # another request deletes it right after this one checked the owner
    service._owned = lambda *_: checked  # type: ignore[method-assign]
    with pytest.raises(NotFound):
        service.update_memory(memory_id, "I like black tea", None, "alice")
    assert store.get(memory_id) is None


def test_fetch_and_mem0s_reset(store: VectorStore) -> None:
    one = str(uuid.uuid4())
    store.insert([_axis(0)], [_payload("alice", "x")], [one])
    assert store.fetch([one, str(uuid.uuid4())]) == {one: store.fetch([one])[one]}
    assert store.fetch([one])[one]["data"] == "x" and store.fetch([]) == {}
    store.reset()  # mem0's reset: empty, and ready for writes again
    assert store.count_user("alice") == 0 and store.fetch([one]) == {}
    store.insert([_axis(1)], [_payload("alice", "y")], [str(uuid.uuid4())])
    assert [h.payload[SEQ_KEY] for h in store.list_user("alice")] == [0]


# --- reads, isolation --------------------------------------------------------------------------
def test_list_and_count_isolate_look_alike_users(store: VectorStore) -> None:
    count = 1200  # past a page of every engine: paging happens in the engine
    alice = [str(uuid.uuid4()) for _ in range(count)]
    store.insert([_axis(0)] * count, [_payload("alice", f"alice fact {i}") for i in range(count)], alice)
    spaced = [str(uuid.uuid4())]
    store.insert([_axis(0)], [_payload("alice ", "a spaced alice fact")], spaced)
    assert store.count_user("alice") == count and store.count_user("alice ") == 1 and store.count_user("Alice") == 0
    listed = store.list_user("alice")
    assert {h.id for h in listed} == set(alice) and all(h.payload["user_id"] == "alice" for h in listed)
    assert len(store.list_user("alice", 7)) == 7 and store.list_user("alice", 1)[0].id in alice
    assert [h.id for h in store.list_user("alice ")] == spaced
    # mem0's list and search, filtered to a user
    assert [h.id for h in store.list(filters={"user_id": "alice "}, top_k=100)[0]] == spaced
    assert len(store.list(filters={"user_id": "alice"}, top_k=50)[0]) == 50
    assert {h.id for h in store.list(filters={"user_id": "alice"})[0]} == set(alice)  # no top_k: all of them
    assert [h.id for h in store.search("q", _axis(0), 10, {"user_id": "alice "})] == spaced
    # the port's calls
    assert {c.id for c in store.candidates("alice ", _axis(0), "spaced", 10, None).items} == set(spaced)
    assert [c.id for c in store.neighbours("alice ", [0, 1], _axis(0))] == spaced


def test_another_users_best_match_is_never_returned(store: VectorStore, embedder: Embedder) -> None:
    mine = _add(store, embedder, "alice", ["I enjoy long walks", "My sister lives in Oslo"])
    bob = _add(store, embedder, "bob", [OKAFOR])
    spaced = _add(store, embedder, "alice ", [OKAFOR])
    query = embedder.embed(OKAFOR)  # bob's and "alice "'s memory is the exact match, in meaning and words
    found = store.candidates("alice", query, OKAFOR, 10, None)
    assert {c.id for c in found.items} == set(mine)
    assert {h.id for h in store.search(OKAFOR, query, 10, {"user_id": "alice"})} == set(mine)
    assert {c.payload["user_id"] for c in store.neighbours("alice", [0, 1, 2], query, OKAFOR)} == {"alice"}
    assert not set(bob + spaced) & {c.id for c in store.neighbours("alice", [0], query, OKAFOR)}


def test_unknown_users_and_ids(store: VectorStore) -> None:
    assert store.candidates("nobody", _axis(1), "anything", 10, None).items == []
    assert store.neighbours("nobody", [0, 1], _axis(1)) == []
    assert store.count_user("nobody") == 0 and store.list_user("nobody") == []
    assert store.get(str(uuid.uuid4())) is None and store.fetch([str(uuid.uuid4())]) == {}
    store.delete(str(uuid.uuid4()))  # no error, as mem0 expects of a vanished id


def test_mem0s_filter_grammar_on_search_and_list(store: VectorStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["I love green tea"], category="food", flag=True)
    _add(store, embedder, "alice", ["I drink black tea"], category="food", flag=1, level=2)
    _add(store, embedder, "alice", ["Tea ceremonies bore me"], category="hobby", level=2.0)
    _add(store, embedder, "bob", ["I love green tea"], category="food", flag=True)
    query = embedder.embed("tea")

    def texts(filters: dict[str, Any]) -> set[str]:
        return {h.payload["data"] for h in store.search("tea", query, top_k=10, filters=filters)}

    found = store.search("tea", query, top_k=10, filters={"user_id": "alice"})
    assert len(found) == 3 and all(h.payload["user_id"] == "alice" for h in found)
    assert all(h.score == pytest.approx(_cos(query, embedder.embed(h.payload["data"])), abs=1e-4) for h in found)
    assert texts({"user_id": "alice", "flag": True}) == {"I love green tea"}  # True is not 1
    assert texts({"user_id": "alice", "flag": 1}) == {"I drink black tea"}
    assert texts({"user_id": "alice", "category": {"in": ["hobby"]}}) == {"Tea ceremonies bore me"}


def test_mem0s_comparison_operators_on_search_and_list(
    request: pytest.FixtureRequest, engine: Engine, store: VectorStore, embedder: Embedder
) -> None:
    differs(request, engine, "edge", "its mem0 `search` and `list` take equality and `in` only", TypeError)
    _add(store, embedder, "alice", ["I love green tea"], category="food", flag=True)
    _add(store, embedder, "alice", ["I drink black tea"], category="food", flag=1, level=2)
    _add(store, embedder, "alice", ["Tea ceremonies bore me"], category="hobby", level=2.0)
    query = embedder.embed("tea")

    def texts(filters: dict[str, Any]) -> set[str]:
        return {h.payload["data"] for h in store.search("tea", query, top_k=10, filters=filters)}

    assert texts({"user_id": "alice", "category": {"ne": "food"}}) == {"Tea ceremonies bore me"}
    assert texts({"user_id": "alice", "level": {"gte": 2}}) == {"I drink black tea", "Tea ceremonies bore me"}
    # `ne` holds for memories without the key too, in the engine and in the adapter's own check
    listed = store.list({"user_id": "alice", "category": {"ne": "hobby"}, "level": {"ne": 3}}, 100)[0]
    assert {h.payload["data"] for h in listed} == {"I love green tea", "I drink black tea"}


def test_a_number_filter_matches_the_number_stored_as_int_or_float(
    request: pytest.FixtureRequest, engine: Engine, store: VectorStore, embedder: Embedder
) -> None:
    differs(request, engine, "edge", "an equality filter on 2 misses a memory that stored 2.0", AssertionError)
    _add(store, embedder, "alice", ["I drink black tea"], level=2)
    _add(store, embedder, "alice", ["Tea ceremonies bore me"], level=2.0)
    hits = store.search("tea", embedder.embed("tea"), top_k=10, filters={"user_id": "alice", "level": 2})
    assert {h.payload["data"] for h in hits} == {"I drink black tea", "Tea ceremonies bore me"}  # 2 == 2.0


def test_an_empty_in_list_matches_nothing(
    request: pytest.FixtureRequest, engine: Engine, store: VectorStore, embedder: Embedder
) -> None:
    differs(request, engine, "chroma", "Chroma's client refuses an empty `$in` list", ValueError)
    _add(store, embedder, "alice", ["I love green tea"], category="food")
    hits = store.search("tea", embedder.embed("tea"), 10, {"user_id": "alice", "category": {"in": []}})
    assert hits == []


# --- candidates --------------------------------------------------------------------------------
def test_candidates_find_a_keyword_only_hit_with_its_cosine(store: VectorStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", FILLER)
    [okafor] = _add(store, embedder, "alice", [OKAFOR])
    query = embedder.embed(QUERY)
    assert okafor not in {h.id for h in store.search(QUERY, query, 10, {"user_id": "alice"})}  # far in meaning

    found = store.candidates("alice", query, QUERY, 10, None)
    by_id = {c.id: c for c in found.items}
    assert by_id[okafor].keyword > 0
    # every candidate carries its exact cosine, dense or keyword side
    for item in found.items:
        assert item.semantic == pytest.approx(_cos(query, embedder.embed(item.payload["data"])), abs=1e-4)
    assert found.keyword_ceiling > 0 and all(c.keyword <= found.keyword_ceiling + 1e-6 for c in found.items)
    # "appointment" is in all 30 fillers: the keyword side is full, not exhaustive
    assert not found.keyword_exhaustive
    rare = store.candidates("alice", query, "Okafor", 10, None)
    assert rare.keyword_exhaustive and [c.id for c in rare.items if c.keyword > 0] == [okafor]


def test_keyword_scores_and_their_ceiling_are_the_users_own(store: VectorStore, embedder: Embedder) -> None:
    """The keyword statistics count the user's memories only: another user's hundred memories holding a
    word do not make it common for alice."""
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
    assert all(c.keyword <= alone.keyword_ceiling + 1e-6 for c in alone.items)


def test_candidates_respect_filters_on_both_sides(store: VectorStore, embedder: Embedder) -> None:
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
        assert {ids.index(c.id) for c in found.items} == expected
        # every memory holds "garden": the keyword side alone returns the same set
        assert {ids.index(c.id) for c in found.items if c.keyword > 0} == expected

    check(SearchFilters(metadata={"room": "yard"}), {0, 1, 2, 3})
    check(SearchFilters(metadata={"flag": True}), {3})
    check(SearchFilters(metadata={"flag": 1}), set())  # a boolean is not the number 1
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


def test_neighbours_return_exactly_the_asked_seqs(store: VectorStore, embedder: Embedder) -> None:
    texts = ["day 0 of the trip", "day 1 of the trip, with Okafor", *[f"day {i} of the trip" for i in range(2, 6)]]
    ids = _add(store, embedder, "alice", texts)
    _add(store, embedder, "bob", texts)  # bob's seqs 0..5 too
    query = embedder.embed("trip")
    near = sorted(store.neighbours("alice", [4, 1, 1, 9], query), key=lambda c: c.payload[SEQ_KEY])
    assert [c.id for c in near] == [ids[1], ids[4]]  # once each, none past the end
    assert [c.payload[SEQ_KEY] for c in near] == [1, 4]
    assert all(c.keyword == 0.0 and c.payload["user_id"] == "alice" for c in near)  # no text: no keyword score
    assert near[0].semantic == pytest.approx(_cos(query, embedder.embed(texts[1])), abs=1e-4)
    assert store.neighbours("alice", [], query) == []
    assert [c.id for c in store.neighbours("alice", [np.int64(5)], query)] == [ids[5]]  # numpy ints too
    scored = store.neighbours("alice", [1, 3], query, "Okafor")  # with the query's text: its keyword score
    assert {c.id: c.keyword > 0 for c in scored} == {ids[1]: True, ids[3]: False}


def test_chinese_keyword_side(store: VectorStore, embedder: Embedder) -> None:
    python, coffee, hours = _add(
        store, embedder, "alice", ["用户偏好使用Python进行数据分析", "喜欢早上喝咖啡", "工作时间是9-17点"]
    )
    query = embedder.embed("编程语言偏好")
    found = store.candidates("alice", query, "编程语言偏好", 10, None)
    assert {c.id for c in found.items} == {python, coffee, hours}  # dense side: all three
    # 偏好 (preference) is shared by the query and the Python memory only
    assert [c.id for c in found.items if c.keyword > 0] == [python] and found.keyword_exhaustive
    assert [c.id for c in store.candidates("alice", query, "早上", 10, None).items if c.keyword > 0] == [coffee]
    # Latin words inside a Chinese run are words of their own
    assert [c.id for c in store.candidates("alice", query, "python", 10, None).items if c.keyword > 0] == [python]


def test_keyword_analysis_stems_and_drops_stop_words(store: VectorStore, embedder: Embedder) -> None:
    dogs, paint, _ = _add(
        store, embedder, "alice", ["She likes hiking with her dogs", "We painted the fence", "The weather was fine"]
    )

    def keyword_hits(text: str) -> list[str]:
        return [c.id for c in store.candidates("alice", embedder.embed(text), text, 10, None).items if c.keyword > 0]

    assert keyword_hits("like dog") == [dogs]
    assert keyword_hits("paintings") == [paint]  # paintings = painted = paint
    assert keyword_hits("the and with") == []  # stop words only: no keyword side at all
    nothing = store.candidates("alice", embedder.embed("the and with"), "the and with", 10, None)
    assert nothing.keyword_exhaustive and len(nothing.items) == 3  # the dense side still answers
    assert keyword_hits("When did she go hiking?") == [dogs]  # question words are stop words too


# --- bounded reads: pages in write order, stats counted by the engine ----------------------------
def _write(store: VectorStore, user: str, n: int, text: str = "m", **metadata: Any) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    store.insert([_axis(i % 8) for i in range(n)], [_payload(user, f"{text} {i}", **metadata) for i in range(n)], ids)
    return ids


def _pages(store: VectorStore, user: str, limit: int, between: Any = None, filters: Any = None) -> list[list[str]]:
    """Every page of `user`, following the last memory of each (`between` runs before each next page)."""
    pages, before = [], None
    while True:
        page = store.page_user(user, limit, before, filters)
        pages.append([hit.id for hit in page])
        if len(page) < limit:
            return pages
        before = (page[-1].payload[SEQ_KEY], page[-1].id)
        if between is not None:
            between()


def test_pages_follow_the_write_order_each_memory_once_while_others_are_added(store: VectorStore) -> None:
    alice = _write(store, "alice", 23)
    acme = Scope("alice", tenant="acme")
    theirs = _write(store, acme.key, 4, **acme.payload_fields())
    _write(store, "bob", 5)
    _write(store, "alice ", 3)
    added: list[str] = []
    pages = _pages(store, "alice", 5, lambda: added.extend(_write(store, "alice", 2, "new")))
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3] and len(added) == 8
    assert [m for page in pages for m in page] == alice[::-1]  # newest first, every one once, none added
    assert [m for page in _pages(store, acme.key, 3) for m in page] == theirs[::-1]  # the tenant's own
    middle = store.get(alice[10])
    assert middle is not None
    older = store.page_user("alice", 4, (middle.payload[SEQ_KEY], alice[10]))
    assert [hit.id for hit in older] == alice[9:5:-1]  # strictly older than the cursor's memory
    assert store.page_user("nobody", 5) == [] and store.page_user("alice", 0) == []


def test_pages_skip_deleted_and_expired_memories_and_keep_to_the_filters(store: VectorStore) -> None:
    ids = _write(store, "alice", 40)
    for memory_id in ids[5:35]:  # a gap in the write order
        store.delete(memory_id)
    _write(store, "alice", 1, "expired", expiration_date="2000-01-01")
    planner = _write(store, "alice", 3, "planned", agent_id="planner")
    listed = [m for page in _pages(store, "alice", 4) for m in page]
    assert listed == planner[::-1] + ids[:34:-1] + ids[4::-1]
    assert _pages(store, "alice", 2, filters=SearchFilters().scoped("planner")) == [planner[:0:-1], planner[:1]]


def test_a_tie_in_the_write_order_is_paged_by_id(store: VectorStore) -> None:
    ids = _write(store, "alice", 8)
    for memory_id in ids[2:6]:  # four memories at one `_seq`, as two writers at once can leave them
        hit = store.get(memory_id)
        assert hit is not None
        store.update(memory_id, payload={**hit.payload, SEQ_KEY: 3})
    order = sorted(store.list_user("alice"), key=lambda h: (h.payload[SEQ_KEY], h.id), reverse=True)
    for limit in (1, 2, 3, 8):
        assert [m for page in _pages(store, "alice", limit) for m in page] == [h.id for h in order], limit


def _forget_day(engine: Engine, store: Any, user: str, ids: list[str]) -> None:
    """Takes `_day` off memories, as memories written before the adapters derived it have none."""
    if engine.name == "edge":
        from qdrant_edge import UpdateOperation

        store.shard.update(UpdateOperation.delete_payload(ids, [DAY_KEY]))
    elif engine.name == "chroma":  # Chroma deletes a key updated to None
        store._on_user(user, lambda c, _s: c.update(ids=ids, metadatas=[{DAY_KEY: None}] * len(ids)), None)
    else:
        store.client.delete_payload(store.collection_name, keys=[DAY_KEY], points=ids)


def test_stats_are_counted_by_the_engine(engine: Engine, store: VectorStore) -> None:
    def write(when: datetime, n: int, **metadata: Any) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        store.insert([_axis(0)] * n, [_payload("alice", f"at {when} {i}", when, **metadata) for i in range(n)], ids)
        return ids

    day = [datetime(2024, 5, d, 12, 0, tzinfo=UTC) for d in range(1, 5)]
    write(day[0], 3, category="food")
    write(day[1], 2, category="drinks")
    write(day[1], 1, category="")  # "other", like a memory without one
    old = write(day[2], 2)
    write(day[2], 1, category=5)  # not a string: no keyword index holds it
    write(datetime(2024, 5, 3, 23, 30, tzinfo=timezone(timedelta(hours=-2))), 1)  # May 4th in UTC
    write(day[0], 1, category="food", expiration_date="2000-01-01")  # expired: not counted
    _write(store, "bob", 2, category="food")
    acme = Scope("alice", tenant="acme")
    _write(store, acme.key, 1, category="acme", **acme.payload_fields())
    _forget_day(engine, store, "alice", old)  # written before `_day`: counted from `created_at`

    tally = store.tally_user("alice")
    assert tally.total == 10 == store.count_user("alice")
    assert tally.days == {"2024-05-01": 3, "2024-05-02": 3, "2024-05-03": 3, "2024-05-04": 1}
    assert tally.categories == {"food": 3, "drinks": 2, "other": 4, "5": 1}
    assert store.tally_user(acme.key) == Tally(1, Counter({"2024-05-01": 1}), Counter({"acme": 1}))
    assert store.tally_user("nobody") == Tally()


# --- validity (issue 22) -------------------------------------------------------------------------
def _end(store: VectorStore, memory_id: str, until: datetime, successor: str | None = None) -> None:
    """What `MemoryService.supersede`/`invalidate` write: a payload-only update."""
    hit = store.get(memory_id)
    assert hit is not None
    store.update(memory_id, payload={**hit.payload, "valid_until": until.isoformat(), "superseded_by": successor})


def test_reads_are_valid_now_by_default_as_of_and_everything_on_request(store: VectorStore, embedder: Embedder) -> None:
    from shared.query.filters import Validity
    from shared.stores.vector.port import ENDED_KEY, VALID_UNTIL_KEY

    [paris] = _add(store, embedder, "alice", ["I live in Paris"])
    [berlin] = store_ids = [str(uuid.uuid4())]
    later = T0 + timedelta(days=30)
    store.insert(
        embedder.embed_batch(["I moved to Berlin"]), [_payload("alice", "I moved to Berlin", later)], store_ids
    )
    [tea, gone] = _add(store, embedder, "alice", ["I like green tea", "I had a cat"])
    [soon] = _add(store, embedder, "alice", ["I work at the bakery"])
    _add(store, embedder, "bob", ["I live in Paris"])
    _end(store, paris, later, berlin)
    _end(store, gone, T0 + timedelta(days=1))  # invalidated
    _end(store, soon, datetime.now(UTC) + timedelta(hours=1))  # ends in an hour: true now
    ended = store.get(paris)
    assert (
        ended
        and ended.payload[ENDED_KEY] is True
        and ended.payload[VALID_UNTIL_KEY] == pytest.approx(later.timestamp())
    )

    vector = embedder.embed("Where does she live?")
    now_ids = {c.id for c in store.candidates("alice", vector, "live Paris Berlin", 10, None).items}
    assert now_ids == {berlin, tea, soon}
    then = SearchFilters().at(Validity.as_of((T0 + timedelta(days=10)).timestamp()))
    assert {c.id for c in store.candidates("alice", vector, "live Paris", 10, then).items} == {paris, tea, soon}
    everything = SearchFilters().at(Validity.everything())
    assert {c.id for c in store.candidates("alice", vector, "live", 10, everything).items} == {
        paris,
        berlin,
        tea,
        gone,
        soon,
    }
    assert {h.id for h in store.list_user("alice")} == now_ids
    assert {h.id for h in store.list_user("alice", None, then)} == {paris, tea, soon}
    assert {h.id for h in store.page_user("alice", 10)} == now_ids
    assert {h.id for h in store.page_user("alice", 10, None, everything)} == {paris, berlin, tea, gone, soon}
    assert store.count_user("alice") == 3 == store.tally_user("alice").total
    seqs = [0, 1, 2, 3, 4]
    assert {c.id for c in store.neighbours("alice", seqs, vector)} == now_ids
    assert {c.id for c in store.neighbours("alice", seqs, vector, "", Validity.everything())} == {
        paris,
        berlin,
        tea,
        gone,
        soon,
    }
    # erasure reads every memory, whatever its validity
    assert {h.id for h in store.list_user("alice", None, None, expired=True)} == {paris, berlin, tea, gone, soon}


def test_expiry_wins_over_validity(store: VectorStore, embedder: Embedder) -> None:
    from shared.query.filters import Validity

    [old] = _add(store, embedder, "alice", ["I live in Paris"], expiration_date="2000-01-01")
    [kept] = _add(store, embedder, "alice", ["I live in Rome"])
    _end(store, kept, T0 + timedelta(days=1))
    everything = SearchFilters().at(Validity.everything())
    assert {h.id for h in store.list_user("alice", None, everything)} == {kept}
    as_of = SearchFilters().at(Validity.as_of(T0.timestamp()))
    assert {c.id for c in store.candidates("alice", embedder.embed("Paris"), "Paris", 5, as_of).items} == {kept}
    assert old not in {c.id for c in store.neighbours("alice", [0, 1], embedder.embed("x"), "", Validity.everything())}


def test_supersede_and_invalidate_on_the_engine(store: VectorStore, embedder: Embedder, tmp_path: Path) -> None:
    from shared.errors import NotFound, ValidationFailed
    from shared.memory.validity import check_supersedes, invalidate, supersede
    from shared.stores.state.history import LocalHistoryStore

    history = LocalHistoryStore(str(tmp_path / "history.db"))
    alice = Scope("alice")
    old, new, other = _add(store, embedder, "alice", ["I live in Paris", "I live in Berlin", "I have a dog"])
    [bobs] = _add(store, embedder, "bob", ["I live in Oslo"])
    with pytest.raises(NotFound):
        supersede(store, history, alice, [bobs], new, None)  # another user's: nothing written
    assert history.get_history(new) == [] and store.count_user("alice") == 3
    supersede(store, history, alice, [old], new, "2024-06-01T00:00:00Z")
    supersede(store, history, alice, [old], new, "2024-06-01T00:00:00Z")  # idempotent
    hit, successor = store.get(old), store.get(new)
    assert hit and hit.payload["superseded_by"] == new and hit.payload["valid_until"] == "2024-06-01T00:00:00.000Z"
    assert successor and successor.payload["supersedes"] == [old]
    assert successor.payload["valid_from"] == "2024-06-01T00:00:00.000Z"
    assert [(r["event"], r["new_memory"]) for r in history.get_history(old)] == [("SUPERSEDED", new)]
    assert [(r["event"], r["old_memory"]) for r in history.get_history(new)] == [("SUPERSEDES", old)]
    assert {h.id for h in store.list_user("alice")} == {new, other}
    with pytest.raises(ValidationFailed):
        check_supersedes(store, alice, [([old], None)])  # no longer current
    check_supersedes(store, alice, [([old], new)])  # but that very successor may name it again (a redo)
    invalidate(store, history, alice, [other], None)
    invalidate(store, history, alice, [other], None)
    assert [r["event"] for r in history.get_history(other)] == ["INVALIDATED"]
    assert {h.id for h in store.list_user("alice")} == {new}
    # the conditional update: a memory deleted before its validity is written stays deleted
    store.delete(new)
    hit = store.get(old)
    assert hit is not None
    store.update(new, payload={**hit.payload, "valid_until": "2024-07-01T00:00:00Z"})
    assert store.get(new) is None and store.fetch([new]) == {}
    with pytest.raises(NotFound):
        invalidate(store, history, alice, [new], None)
    history.close()


# --- mem0 on the adapter -----------------------------------------------------------------------
def test_mem0_memory_works_on_the_adapter(store: VectorStore, embedder: Embedder, tmp_path: Path) -> None:
    from shared.ai.llm import build_chat_model
    from shared.memory.mem0_engine import build_memory, prepare_mem0_environment
    from shared.settings import Settings
    from shared.stores.state.history import build_history_store

    settings = Settings(
        data_dir=tmp_path / "data",
        local_embedding_model_path=local_model_path(),
        local_embedding_threads=1,
        state_store="local",
        llm_provider="none",
        embedding_provider="local",
    )
    prepare_mem0_environment(settings)
    memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings), store)
    first = memory.add("I moved to Lisbon in March", user_id="alice", infer=False)["results"][0]
    second = memory.add("My favourite food is ramen", user_id="alice", infer=False)["results"][0]
    memory.add("Bob's note", user_id="bob", infer=False)
    got = memory.get(first["id"])
    assert got["memory"] == "I moved to Lisbon in March" and got["user_id"] == "alice"
    assert store.get(first["id"]).payload[SEQ_KEY] == 0  # type: ignore[union-attr]
    assert store.get(second["id"]).payload[SEQ_KEY] == 1  # type: ignore[union-attr]

    memory.update(first["id"], "I moved to Porto in March")
    assert memory.get(first["id"])["memory"] == "I moved to Porto in March"
    updated = store.get(first["id"])
    assert updated and updated.payload[SEQ_KEY] == 0  # kept through mem0's rebuild
    assert updated.payload["data"] == "I moved to Porto in March"
    porto = store.candidates("alice", embedder.embed("Porto"), "Porto", 5, None)
    assert [c.id for c in porto.items if c.keyword > 0] == [first["id"]]  # the words follow mem0's update
    listed = memory.get_all(filters={"user_id": "alice"})["results"]
    assert {m["id"] for m in listed} == {first["id"], second["id"]}
    searched = memory.search("Which city did I move to?", filters={"user_id": "alice"}, top_k=1)["results"]
    assert [m["id"] for m in searched] == [first["id"]]

    memory.delete(second["id"])
    assert memory.get(second["id"]) is None and store.get(second["id"]) is None
    assert store.count_user("alice") == 1 and store.count_user("bob") == 1


# --- the duplicate check (shared/memory/dedupe.py) -------------------------------------------------
def test_twins_find_the_same_normalized_text_and_the_nearest_of_the_scope(
    store: VectorStore, embedder: Embedder
) -> None:
    from shared.query.sameness import norm_key, scope_tag

    tea, coffee = _add(store, embedder, "alice", ["I like tea.", "I like coffee"])
    (planner,) = _add(store, embedder, "alice", ["I like tea"], agent_id="planner")
    _add(store, embedder, "bob", ["I like tea"])
    acme = Scope("alice", tenant="acme")
    _add(store, embedder, acme.key, ["I like tea"], **acme.payload_fields())
    (gone,) = _add(store, embedder, "alice", ["Likes green tea"], expiration_date="2000-01-01")
    plain, key = scope_tag(None, None), norm_key("i LIKE  tea！")
    vectors = embedder.embed_batch(["I like tea", "Likes green tea", "Something else entirely"])
    found = store.twins("alice", plain, [key, norm_key("Likes green tea")], vectors)
    assert [hit.id for hit in found.exact] == [tea]  # not another scope's, user's, tenant's; not expired
    assert found.exact[0].payload["data"] == "I like tea."
    nearest = [candidate.id if candidate else None for candidate in found.nearest]
    assert nearest[0] == tea and gone not in nearest and found.nearest[0] is not None
    assert found.nearest[0].semantic == pytest.approx(_cos(vectors[0], embedder.embed("I like tea.")), abs=1e-3)
    scoped = store.twins("alice", scope_tag("planner", None), [key], vectors[:1])
    assert [hit.id for hit in scoped.exact] == [planner] and scoped.nearest[0] is not None
    assert scoped.nearest[0].id == planner
    assert coffee not in [hit.id for hit in found.exact]
    empty = store.twins("nobody", plain, [key], vectors[:1])
    assert empty.exact == [] and empty.nearest == [None]
    assert store.twins("alice", plain, [], []).exact == []


def test_twins_follow_a_text_update_and_a_deletion(store: VectorStore, embedder: Embedder) -> None:
    from shared.query.sameness import norm_key, scope_tag

    (memory,) = _add(store, embedder, "alice", ["Lives in Paris"])
    hit = store.get(memory)
    assert hit is not None
    store.update(memory, embedder.embed("Lives in Berlin"), {**hit.payload, "data": "Lives in Berlin"})
    plain = scope_tag(None, None)
    assert store.twins("alice", plain, [norm_key("lives in paris")], []).exact == []
    assert [h.id for h in store.twins("alice", plain, [norm_key("lives in berlin")], []).exact] == [memory]
    store.delete(memory)
    after = store.twins("alice", plain, [norm_key("lives in berlin")], [embedder.embed("Lives in Berlin")])
    assert after.exact == [] and after.nearest == [None]
