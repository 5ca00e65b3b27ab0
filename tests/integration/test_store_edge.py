"""The default store: Qdrant Edge in process (shared/stores/vector/edge/), on real shards on disk."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.ai.embeddings import Embedder, LocalEmbedder
from shared.contract import SearchFilters
from shared.errors import ConfigurationProblem
from shared.stores.vector import build_vector_store, is_old_embedded_store
from shared.stores.vector.edge import EdgeVectorStore
from shared.stores.vector.port import SEQ_KEY, TS_KEY, VectorStore
from tests.helpers import REPO, local_model_path

DIMS = 384
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", local_model_path(), DIMS, 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeVectorStore]:
    opened = EdgeVectorStore(tmp_path / "shard", "memories", DIMS)
    yield opened
    opened.close()


def _payload(user: str, text: str, when: datetime = T0, **metadata: Any) -> dict[str, Any]:
    return {"user_id": user, "data": text, "hash": str(hash(text)), "created_at": when.isoformat(), **metadata}


def _add(store: VectorStore, embedder: Embedder, user: str, texts: list[str], **metadata: Any) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in texts]
    store.insert(embedder.embed_batch(texts), [_payload(user, t, **metadata) for t in texts], ids)
    return ids


def _cos(a: Any, b: Any) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the shard ---------------------------------------------------------------------------------
def test_reopening_keeps_data_and_the_write_order(tmp_path: Path, embedder: Embedder) -> None:
    first = EdgeVectorStore(tmp_path / "shard", "memories", DIMS)
    assert isinstance(first, VectorStore) and first.kind == "edge"
    ids = _add(first, embedder, "alice", ["one", "two"])
    first.close()
    again = EdgeVectorStore(tmp_path / "shard", "memories", DIMS)
    try:
        assert again.count_user("alice") == 2
        _add(again, embedder, "alice", ["three"])
        assert sorted(h.payload[SEQ_KEY] for h in again.list_user("alice")) == [0, 1, 2]
        assert again.get(ids[0]) is not None
    finally:
        again.close()


def test_another_embedder_size_is_refused_with_the_fix(tmp_path: Path) -> None:
    EdgeVectorStore(tmp_path / "shard", "memories", DIMS).close()
    with pytest.raises(ConfigurationProblem, match="COLLECTION_NAME"):
        EdgeVectorStore(tmp_path / "shard", "memories", 768)


def test_a_second_process_is_refused_with_a_message_naming_the_folder(store: EdgeVectorStore) -> None:
    code = (
        "from shared.stores.vector.edge import EdgeVectorStore\n"
        "from shared.errors import StoreLocked\n"
        f"try:\n    EdgeVectorStore({str(store.path)!r}, 'memories', {DIMS})\n"
        "except StoreLocked as e:\n    print('refused:', e.code, e.headers, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "refused: store_locked {}" in out.stdout, out  # no Retry-After: waiting does not help
    assert "another process" in out.stdout and str(store.path) in out.stdout and "DATA_DIR" in out.stdout, out


# --- mem0's calls ------------------------------------------------------------------------------
def test_insert_get_update_keep_seq_and_ts(store: EdgeVectorStore, embedder: Embedder) -> None:
    [memory_id] = _add(store, embedder, "alice", ["I like green tea"], category="food")
    stored = store.get(memory_id)
    assert stored is not None
    assert stored.payload[SEQ_KEY] == 0 and stored.payload[TS_KEY] == pytest.approx(T0.timestamp())
    # mem0's update rebuilds the payload without our fields: they are carried over
    store.update(memory_id, embedder.embed("I like black tea"), {"user_id": "alice", "data": "I like black tea"})
    updated = store.get(memory_id)
    assert updated is not None and updated.payload["data"] == "I like black tea"
    assert updated.payload[SEQ_KEY] == 0 and TS_KEY in updated.payload
    store.update(memory_id, vector=embedder.embed("coffee"))  # vector only: the payload stays
    assert store.get(memory_id).payload["data"] == "I like black tea"  # type: ignore[union-attr]
    store.delete(memory_id)
    assert store.get(memory_id) is None


def test_seq_is_contiguous_per_user_across_calls_and_users(store: EdgeVectorStore) -> None:
    vectors = [[float(i + 1)] + [0.0] * (DIMS - 1) for i in range(4)]
    store.insert(vectors[:2], [_payload("alice", "a0"), _payload("bob", "b0")], [str(uuid.uuid4()) for _ in range(2)])
    store.insert(vectors[2:], [_payload("alice", "a1"), _payload("alice", "a2")], [str(uuid.uuid4()) for _ in range(2)])
    seqs = {h.payload["data"]: h.payload[SEQ_KEY] for u in ("alice", "bob") for h in store.list_user(u)}
    assert seqs == {"a0": 0, "a1": 1, "a2": 2, "b0": 0}


def test_concurrent_inserts_of_one_user_get_distinct_seqs(store: EdgeVectorStore) -> None:
    def write(n: int) -> None:
        for i in range(10):
            store.insert([[1.0] + [0.0] * (DIMS - 1)], [_payload("carol", f"{n}-{i}")], [str(uuid.uuid4())])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(h.payload[SEQ_KEY] for h in store.list_user("carol")) == list(range(40))


def test_list_and_count_isolate_look_alike_users(store: EdgeVectorStore) -> None:
    vector = [1.0] + [0.0] * (DIMS - 1)
    store.insert(
        [vector] * 1200, [_payload("alice", f"m{i}") for i in range(1200)], [str(uuid.uuid4()) for _ in range(1200)]
    )
    store.insert([vector], [_payload("alice ", "look-alike")], [str(uuid.uuid4())])
    assert store.count_user("alice") == 1200 and store.count_user("alice ") == 1
    assert len(store.list_user("alice")) == 1200  # more than one page
    assert len(store.list_user("alice", 50)) == 50
    assert [h.payload["data"] for h in store.list_user("alice ")] == ["look-alike"]
    assert {h.payload["user_id"] for h in store.list(filters={"user_id": "alice"})[0]} == {"alice"}


def test_mem0_search_filters(store: EdgeVectorStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["I adopted a puppy"], category="pets")
    _add(store, embedder, "alice", ["I bought a bike"], category="sport")
    _add(store, embedder, "bob", ["I adopted a kitten"], category="pets")
    query = embedder.embed("pet adoption")
    hits = store.search("pet adoption", query, top_k=5, filters={"user_id": "alice", "category": {"in": ["pets"]}})
    assert [h.payload["data"] for h in hits] == ["I adopted a puppy"]
    assert hits[0].score == pytest.approx(_cos(query, embedder.embed("I adopted a puppy")), abs=1e-4)


# --- the port ----------------------------------------------------------------------------------
FILLER = [
    f"I have an appointment with {p} on {d}"
    for p in ("the dentist", "my GP", "the optician")
    for d in ("Monday", "Friday")
]


def test_candidates_find_a_keyword_only_hit_with_its_cosine(store: EdgeVectorStore, embedder: Embedder) -> None:
    ids = _add(store, embedder, "alice", [*FILLER, "Okafor fixed my chipped tooth"])
    query = "When is my appointment with Dr. Okafor?"
    vector = embedder.embed(query)
    found = store.candidates("alice", vector, query, 3, None)
    by_id = {c.id: c for c in found.items}
    okafor = by_id[ids[-1]]
    assert okafor.keyword > 0
    assert okafor.semantic == pytest.approx(_cos(vector, embedder.embed("Okafor fixed my chipped tooth")), abs=1e-4)
    assert len(found.items) <= 6
    # the ceiling is the user's idf of the query words some memory holds: a share never passes 1
    assert found.keyword_ceiling > 0
    assert all(c.keyword <= found.keyword_ceiling * 1.5 for c in found.items)


def test_keyword_scores_use_the_users_own_statistics(store: EdgeVectorStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["Caroline went to the support group", "Caroline painted a lake"])
    query = "support group"
    before = {
        c.payload["data"]: c.keyword for c in store.candidates("alice", embedder.embed(query), query, 10, None).items
    }
    # another user writing the same words many times changes nothing for alice
    store.insert(
        [embedder.embed("support group")] * 300,
        [_payload("bob", "support group meeting") for _ in range(300)],
        [str(uuid.uuid4()) for _ in range(300)],
    )
    after = {
        c.payload["data"]: c.keyword for c in store.candidates("alice", embedder.embed(query), query, 10, None).items
    }
    assert before == pytest.approx(after)
    assert before["Caroline went to the support group"] > 0 == before["Caroline painted a lake"]


def test_candidates_respect_filters_on_both_sides(store: EdgeVectorStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", ["Okafor is my dentist"], category="health", source="chat")
    _add(store, embedder, "alice", ["Okafor sold me a bike"], category="sport", flag=True)
    old = [str(uuid.uuid4())]
    store.insert(
        [embedder.embed("Okafor, long ago")], [_payload("alice", "Okafor, long ago", T0 - timedelta(days=400))], old
    )
    vector = embedder.embed("Okafor")

    def texts(filters: SearchFilters) -> set[str]:
        return {c.payload["data"] for c in store.candidates("alice", vector, "Okafor", 10, filters).items}

    assert texts(SearchFilters(categories=["health"])) == {"Okafor is my dentist"}
    assert texts(SearchFilters(metadata={"source": "chat"})) == {"Okafor is my dentist"}
    assert texts(SearchFilters(metadata={"flag": True})) == {"Okafor sold me a bike"}
    assert texts(SearchFilters(metadata={"flag": 1})) == set()  # a boolean is not a number
    assert texts(SearchFilters(created_before=T0 - timedelta(days=1))) == {"Okafor, long ago"}
    assert "Okafor, long ago" not in texts(SearchFilters(created_after=T0 - timedelta(days=1)))


def test_candidates_and_neighbours_never_cross_users(store: EdgeVectorStore, embedder: Embedder) -> None:
    _add(store, embedder, "alice", FILLER)
    _add(store, embedder, "bob", ["When is my appointment with Dr. Okafor?"])
    query = "When is my appointment with Dr. Okafor?"
    found = store.candidates("alice", embedder.embed(query), query, 50, None)
    assert {c.payload["user_id"] for c in found.items} == {"alice"}
    assert {c.payload["user_id"] for c in store.neighbours("alice", [0, 1, 2], embedder.embed(query), query)} == {
        "alice"
    }


def test_neighbours_return_exactly_the_asked_seqs_with_keyword_scores(
    store: EdgeVectorStore, embedder: Embedder
) -> None:
    _add(store, embedder, "alice", ["zero", "one about Okafor", "two", "three"])
    got = store.neighbours("alice", [1, 3], embedder.embed("Okafor"), "Okafor")
    assert sorted((c.payload["data"], c.payload[SEQ_KEY]) for c in got) == [("one about Okafor", 1), ("three", 3)]
    assert {c.payload["data"]: c.keyword > 0 for c in got} == {"one about Okafor": True, "three": False}


def test_the_seeds_chinese_examples_are_keyword_candidates(store: EdgeVectorStore, embedder: Embedder) -> None:
    ids = _add(store, embedder, "alice", ["用户偏好使用Python进行数据分析", "喜欢早上喝咖啡", "工作时间是9-17点"])
    found = store.candidates("alice", embedder.embed("编程语言偏好"), "编程语言偏好", 10, None)
    keyword = {c.id: c.keyword for c in found.items}
    # the Multilingual tokenizer segments 编程语言偏好 into words; 偏好 (preference) is shared
    assert keyword[ids[0]] > 0
    assert keyword[ids[1]] == 0 and keyword[ids[2]] == 0


def test_mem0_memory_works_on_the_adapter(tmp_path: Path, embedder: Embedder) -> None:
    from shared.ai.backends import build_memory, prepare_mem0_environment
    from shared.ai.llm import build_chat_model
    from shared.settings import Settings
    from shared.stores.state.history import build_history_store

    settings = Settings(data_dir=tmp_path / "data", local_embedding_model_path=local_model_path(), state_store="local")
    prepare_mem0_environment(settings)
    store = build_vector_store(settings)
    assert isinstance(store, EdgeVectorStore)
    memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings), store)
    try:
        first = memory.add("I moved to Lisbon in March", user_id="alice", infer=False)["results"][0]
        memory.add("Bob's note", user_id="bob", infer=False)
        assert memory.get(first["id"])["memory"] == "I moved to Lisbon in March"
        memory.update(first["id"], "I moved to Porto in March")
        assert memory.get(first["id"])["memory"] == "I moved to Porto in March"
        assert store.get(first["id"]).payload[SEQ_KEY] == 0  # type: ignore[union-attr]
        memory.delete(first["id"])
        assert memory.get(first["id"]) is None
        assert store.count_user("bob") == 1
    finally:
        store.close()


# --- the store before this engine --------------------------------------------------------------
def _old_store(root: Path, embedder: Embedder) -> list[str]:
    """A folder as the previous version wrote it: mem0's Qdrant adapter over qdrant-client local mode."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(root))
    client.create_collection("memories", vectors_config=models.VectorParams(size=DIMS, distance=models.Distance.COSINE))
    ids = [str(uuid.uuid4()) for _ in range(3)]
    texts = ["first turn", "second turn", "a note of bob's"]
    payloads = [
        {**_payload("alice", texts[0]), "seq": 0},
        {**_payload("alice", texts[1]), "seq": 1},
        _payload("bob", texts[2]),
    ]
    client.upsert(
        "memories",
        [
            models.PointStruct(id=i, vector=v, payload=p)
            for i, v, p in zip(ids, embedder.embed_batch(texts), payloads, strict=True)
        ],
    )
    client.close()
    return ids


def test_an_old_embedded_store_is_refused_then_migrated(tmp_path: Path, embedder: Embedder) -> None:
    from shared.settings import Settings
    from tools.ops.migrate_store import migrate

    root = tmp_path / "data" / "qdrant"
    ids = _old_store(root, embedder)
    assert is_old_embedded_store(root)
    settings = Settings(data_dir=tmp_path / "data", local_embedding_model_path=local_model_path())
    with pytest.raises(ConfigurationProblem, match=r"tools\.ops\.migrate_store"):
        build_vector_store(settings)

    assert migrate(root) == {"memories": 3}
    assert not is_old_embedded_store(root)
    assert any(p.name.startswith("qdrant.local-mode-") for p in root.parent.iterdir())  # kept beside it
    store = build_vector_store(settings)
    try:
        alice = sorted((h.payload[SEQ_KEY], h.payload["data"], h.id) for h in store.list_user("alice"))
        assert alice == [(0, "first turn", ids[0]), (1, "second turn", ids[1])]
        found = store.candidates("alice", embedder.embed("second turn"), "second turn", 5, None)
        assert found.items and max(found.items, key=lambda c: c.semantic).id == ids[1]
        assert store.count_user("bob") == 1
    finally:
        store.close()


def test_a_rewrite_never_brings_back_a_memory_deleted_meanwhile(store: EdgeVectorStore, embedder: Embedder) -> None:
    [memory_id] = _add(store, embedder, "alice", ["I like green tea"])
    store.delete(memory_id)
    # what mem0's update sends after it read the memory, when a delete won the race in between
    store.update(memory_id, embedder.embed("I like black tea"), {"user_id": "alice", "data": "I like black tea"})
    assert store.get(memory_id) is None and store.count_user("alice") == 0


def test_an_update_that_loses_a_race_with_a_delete_is_not_found(tmp_path: Path, embedder: Embedder) -> None:
    from shared.ai.backends import build_memory, prepare_mem0_environment
    from shared.ai.llm import build_chat_model
    from shared.contract import MemoryInput
    from shared.errors import NotFound
    from shared.memory.service import MemoryService
    from shared.settings import Settings
    from shared.stores.state.history import build_history_store

    settings = Settings(data_dir=tmp_path / "data", local_embedding_model_path=local_model_path(), state_store="local")
    prepare_mem0_environment(settings)
    store = build_vector_store(settings)
    memory = build_memory(settings, embedder, build_chat_model(settings), build_history_store(settings), store)
    service = MemoryService(memory, store, embedder, settings)
    try:
        [memory_id] = service.add_memories("alice", [MemoryInput(content="I like green tea")])
        checked = service.get_memory(memory_id, "alice")
        store.delete(memory_id)  # another request deletes it right after this one checked the owner
        service._owned = lambda *_: checked  # type: ignore[method-assign]
        with pytest.raises(NotFound):
            service.update_memory(memory_id, "I like black tea", None, "alice")
        assert store.get(memory_id) is None
    finally:
        store.close()
