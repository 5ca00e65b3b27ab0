"""What only the default store does: Qdrant Edge in process (shared/stores/vector/edge/), on real shards
on disk, one process to a folder. What every adapter does is in test_store_contract.py."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.ai.embeddings import Embedder, LocalEmbedder
from shared.errors import ConfigurationProblem
from shared.stores.vector import build_vector_store, is_old_embedded_store
from shared.stores.vector.edge import EdgeVectorStore
from shared.stores.vector.port import SEQ_KEY
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


# --- the shard ---------------------------------------------------------------------------------
def test_the_default_settings_open_a_shard_in_the_data_folder(tmp_path: Path) -> None:
    from shared.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", local_embedding_model_path=local_model_path())
    store = build_vector_store(settings)
    try:
        assert isinstance(store, EdgeVectorStore) and store.kind == "edge"
        assert Path(store.path).is_relative_to(tmp_path / "data")
    finally:
        store.close()


def test_writes_are_flushed_once_per_interval_by_one_writer() -> None:
    from shared.stores.vector.edge.flushing import Flusher

    now = [100.0]
    flushes: list[float] = []

    class Shard:
        def flush(self) -> None:
            flushes.append(now[0])

    flusher = Flusher(interval=5.0, clock=lambda: now[0])
    for step in range(40):  # a write every 0.5 s for 20 s
        now[0] = 100.0 + 0.5 * step
        flusher.wrote(Shard())
    assert flushes == [105.0, 110.0, 115.0]


def test_a_worker_that_keeps_writing_keeps_its_write_ahead_log_short(tmp_path: Path) -> None:
    """The engine drops from its log what a flush wrote into the segments (keeping one closed 32 MB
    log segment and the open one); without flushes the log, mapped into the worker's memory and
    replayed at every start, held every write since the worker started."""
    import numpy as np

    def log_mb(path: Path) -> float:  # the blocks written: a log segment is a sparse 32 MB file
        return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file() and "wal" in f.parts) / 2**20

    sizes = {}
    rng = np.random.default_rng(1)
    for interval in (0.0, float("inf")):
        folder = tmp_path / f"shard-{interval}"
        opened = EdgeVectorStore(folder, "memories", 8)
        opened.flusher.interval = interval
        try:
            for batch in range(40):  # ~160 MB of updates: 4 KB of payload each
                vectors = rng.standard_normal((1000, 8)).astype("float32").tolist()
                payloads = [{"user_id": "u", "data": f"m {batch}-{i}", "pad": "x" * 4000} for i in range(1000)]
                opened.insert(vectors, payloads)
            sizes[interval] = log_mb(folder)
        finally:
            opened.close()
    assert sizes[float("inf")] > 128, sizes  # every write still in the log
    assert sizes[0.0] <= 66, sizes


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
