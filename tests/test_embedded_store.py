"""The embedded store's user index answers exactly what local-mode Qdrant filtering answers."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import numpy as np
import pytest

from shared.embedded_store import EmbeddedQdrantStore


@pytest.fixture
def stores(tmp_path: Path):
    from mem0.vector_stores.qdrant import Qdrant
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "q"))
    raw = Qdrant(collection_name="memories", embedding_model_dims=8, client=client)
    raw._bm25_encoder = False
    yield raw, EmbeddedQdrantStore(raw)
    client.close()


def _vector(rng: random.Random) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(8)]


def test_user_search_and_list_equal_local_mode_filtering(stores) -> None:
    raw, fast = stores
    rng = random.Random(7)
    users = ["alice", "bob", "carol"]
    ids = [str(uuid.uuid4()) for _ in range(300)]
    fast.insert(
        vectors=[_vector(rng) for _ in ids],
        ids=ids,
        payloads=[{"user_id": users[i % 3], "data": f"m{i}"} for i in range(len(ids))],
    )
    # writes through the wrapper after the index exists keep it exact
    fast.search(query="", vectors=_vector(rng), top_k=1, filters={"user_id": "alice"})
    extra = str(uuid.uuid4())
    fast.insert(vectors=[_vector(rng)], ids=[extra], payloads=[{"user_id": "alice", "data": "late"}])
    fast.delete(vector_id=ids[0])  # an alice memory
    fast.update(vector_id=ids[1], vector=_vector(rng), payload={"user_id": "bob", "data": "edited"})

    for user in users:
        query = _vector(rng)
        expected = raw.search(query="", vectors=query, top_k=15, filters={"user_id": user})
        got = fast.search(query="", vectors=query, top_k=15, filters={"user_id": user})
        assert [str(p.id) for p in got] == [str(p.id) for p in expected]
        assert np.allclose([p.score for p in got], [p.score for p in expected], atol=1e-5)
        assert all(p.payload["user_id"] == user for p in got)
        listed = {str(p.id) for p in fast.list(filters={"user_id": user}, top_k=1000)[0]}
        assert listed == {str(p.id) for p in raw.list(filters={"user_id": user}, top_k=1000)[0]}
    assert extra in {str(p.id) for p in fast.list(filters={"user_id": "alice"}, top_k=1000)[0]}
    assert fast._fast  # the fast path stayed on


def test_other_filters_use_local_mode(stores) -> None:
    _, fast = stores
    rng = random.Random(3)
    ids = [str(uuid.uuid4()) for _ in range(20)]
    fast.insert(
        vectors=[_vector(rng) for _ in ids],
        ids=ids,
        payloads=[{"user_id": "alice", "data": f"m{i}", "category": "a" if i % 2 else "b"} for i in range(20)],
    )
    found = fast.search(query="", vectors=_vector(rng), top_k=50, filters={"user_id": "alice", "category": "a"})
    assert len(found) == 10 and {p.payload["category"] for p in found} == {"a"}
