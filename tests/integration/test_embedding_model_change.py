"""A change of embedding model on existing data is refused, naming the migration; the migration re-embeds.

Each embedded shard records the model (and size) that embedded its memories
(shared/stores/vector/edge/embedding.py). Vectors of two models cannot be compared even at one size,
so the service refuses to open memories of another model, and `python -m tools.ops.migrate_store --reembed`
embeds every memory's text again with the configured model.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared import factory
from shared.contract import MemoryInput
from shared.errors import ConfigurationProblem
from shared.settings import Settings
from shared.stores.vector import build_vector_store
from shared.stores.vector.edge import EdgeVectorStore
from shared.stores.vector.edge.compaction import compact
from shared.stores.vector.edge.embedding import MODEL_FILE, REEMBED_COMMAND, EmbeddingModelChanged, recorded
from tests.helpers import local_model_path
from tools.harness.chroma_server import ChromaServer
from tools.ops import migrate_store


def _store(path: Path, model: str | None, dims: int = 4) -> EdgeVectorStore:
    return EdgeVectorStore(path, "memories", dims, embedding_model=model)


def _add_one(store: EdgeVectorStore, dims: int = 4) -> None:
    store.insert([[1.0] + [0.0] * (dims - 1)], [{"user_id": "u", "data": "hello"}], [str(uuid.uuid4())])


def test_memories_of_another_model_are_refused_naming_the_migration(tmp_path: Path) -> None:
    shard = tmp_path / "memories"
    store = _store(shard, "model-a")
    _add_one(store)
    store.close()
    assert recorded(shard) == {"model": "model-a", "dims": 4}

    with pytest.raises(EmbeddingModelChanged) as raised:
        _store(shard, "model-b")  # the same size: only the record tells them apart
    assert REEMBED_COMMAND in raised.value.message and "model-a" in raised.value.message
    assert raised.value.status == 503 and raised.value.code == "misconfigured"
    _store(shard, "model-a").close()  # the store was released: the right model opens it


def test_a_change_of_size_is_refused_naming_the_migration(tmp_path: Path) -> None:
    shard = tmp_path / "memories"
    store = _store(shard, "model-a")
    _add_one(store)
    store.close()
    with pytest.raises(ConfigurationProblem, match="vector size") as raised:
        _store(shard, "model-c", dims=8)
    assert REEMBED_COMMAND in raised.value.message and "model-a" in raised.value.message


def test_an_empty_shard_takes_the_new_model_and_an_unrecorded_one_is_adopted(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    _store(empty, "model-a").close()
    _store(empty, "model-b").close()  # nothing embedded by model-a: nothing to refuse
    assert recorded(empty) == {"model": "model-b", "dims": 4}

    older = tmp_path / "older"
    store = _store(older, None)  # written before the record existed
    _add_one(store)
    store.close()
    assert recorded(older) is None
    _store(older, "model-a").close()
    assert recorded(older) == {"model": "model-a", "dims": 4}


def test_compaction_keeps_the_record(tmp_path: Path) -> None:
    shard = tmp_path / "memories"
    store = _store(shard, "model-a")
    _add_one(store)
    store.close()
    done = compact(shard, lambda folder: _store(folder, None))
    assert done.points == 1 and recorded(shard) == {"model": "model-a", "dims": 4}


def test_the_migration_re_embeds_into_the_multilingual_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    minilm = Settings(data_dir=data, local_embedding_model_path=local_model_path(), state_store="local")
    service = factory.build_memory_service(minilm)
    ids = service.add_memories(
        "alice",
        [
            MemoryInput(content="Alice prefers green tea in the morning", metadata={"category": "habits"}),
            MemoryInput(content="用户偏好使用Python进行数据分析", metadata={"category": "preferences"}),
            MemoryInput(content="Alice's dog is called Pepper"),
        ],
    )
    service.close()
    shard = minilm.resolved_qdrant_path / minilm.collection_name
    assert recorded(shard) == {"model": "sentence-transformers/all-MiniLM-L6-v2", "dims": 384}

    multilingual = Settings(data_dir=data, local_embedding_model="multilingual", state_store="local")
    assert multilingual.resolved_embedding_dims == 512
    with pytest.raises(ConfigurationProblem) as raised:
        build_vector_store(multilingual)
    assert REEMBED_COMMAND in raised.value.message

    assert migrate_store.reembed(settings=multilingual) == 3
    assert recorded(shard) == {"model": "google/universal-sentence-encoder-multilingual/3", "dims": 512}
    kept = [p for p in shard.parent.iterdir() if p.name.startswith("memories.before-reembed-")]
    assert len(kept) == 1 and (kept[0] / MODEL_FILE).is_file()

    service = factory.build_memory_service(multilingual)
    try:
        listed = {m.id: m for m in service.list_memories("alice")}
        assert set(listed) == set(ids)  # ids, texts and metadata kept
        assert {m.metadata.get("category") for m in listed.values()} >= {"habits", "preferences"}
        found = service.search_memories("alice", "爱丽丝的狗叫什么名字？", 1)  # a Chinese question, an English memory
        assert found and "Pepper" in found[0].memory
    finally:
        service.close()


def test_a_chroma_collection_records_its_model_and_refuses_another(chroma_server: ChromaServer) -> None:
    import chromadb

    from shared.stores.vector.chroma import ChromaVectorStore

    client = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    name = f"t-{uuid.uuid4().hex[:10]}"
    store = ChromaVectorStore(client, name, 4, embedding_model="model-a")
    ChromaVectorStore(client, name, 4, embedding_model="model-b").close()  # no memory yet: it takes model-b
    store.close()
    store = ChromaVectorStore(client, name, 4, embedding_model="model-b")
    try:
        store.insert([[1.0, 0.0, 0.0, 0.0]], [{"user_id": "u", "data": "hello"}], [str(uuid.uuid4())])
        with pytest.raises(ConfigurationProblem, match=r"embedded with model-b.*COLLECTION_NAME"):
            ChromaVectorStore(client, name, 4, embedding_model="model-c")
        ChromaVectorStore(client, name, 4, embedding_model="model-b").close()
    finally:
        store.delete_col()
        store.close()
