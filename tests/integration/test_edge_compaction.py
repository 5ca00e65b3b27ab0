"""The embedded store's compaction (shared/stores/vector/edge/compaction.py) on real Qdrant Edge
shards: after it, no file of the store holds a deleted memory's text, every live memory is as it
was, and an interrupted swap is finished or undone when the store next opens."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np

from shared.stores.vector.edge import EdgeVectorStore
from shared.stores.vector.edge.compaction import COMPLETE_MARKER, compact, fresh_path, retired_path
from tests.helpers import REPO

DIMS = 8


def _files_holding(root: Path, needle: str) -> list[str]:
    data = needle.encode()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and data in p.read_bytes())


def _vectors(count: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(map(float, v)) for v in rng.standard_normal((count, DIMS))]


def _fill(path: Path, canary: str) -> tuple[list[str], list[str]]:
    store = EdgeVectorStore(path, "memories", DIMS)
    try:
        doomed = [str(uuid.uuid4()) for _ in range(20)]
        kept = [str(uuid.uuid4()) for _ in range(30)]
        store.insert(_vectors(20, 1), [{"user_id": "gone", "data": f"{canary} {i}"} for i in range(20)], doomed)
        store.insert(_vectors(30, 2), [{"user_id": "kept", "data": f"kept memory {i}"} for i in range(30)], kept)
        for memory_id in doomed:
            store.delete(memory_id)
    finally:
        store.close()
    return doomed, kept


def _open(folder: Path) -> EdgeVectorStore:
    return EdgeVectorStore(folder, "memories", DIMS)


def test_compaction_erases_deleted_texts_and_keeps_the_rest(tmp_path: Path) -> None:
    shard = tmp_path / "qdrant" / "memories"
    canary = f"CANARY-{uuid.uuid4().hex}"
    _, kept = _fill(shard, canary)
    store = _open(shard)
    before = {memory_id: payload for memory_id, payload in store.fetch(kept).items()}
    store.close()
    assert _files_holding(shard, canary), "the engine keeps deleted bytes: nothing to prove otherwise"

    done = compact(shard, _open)
    assert done.points == 30
    assert _files_holding(shard, canary) == []
    assert not fresh_path(shard).exists() and not retired_path(shard).exists()
    assert not (shard / COMPLETE_MARKER).exists()
    store = _open(shard)
    try:
        assert store.fetch(kept) == before  # payloads exactly, `_seq` and the other derived fields included
        assert store.count_user("kept") == 30 and store.count_user("gone") == 0
        vector = _vectors(30, 2)[5]
        found = store.candidates("kept", vector, "kept memory", 5, None)
        assert kept[5] in {c.id for c in found.items}  # the dense index works on the rewrite
        store.insert(_vectors(1, 3), [{"user_id": "kept", "data": "after"}], [str(uuid.uuid4())])
        assert store.count_user("kept") == 31
    finally:
        store.close()


def test_an_interrupted_swap_is_finished_or_undone_on_open(tmp_path: Path) -> None:
    shard = tmp_path / "memories"
    _fill(shard, "x")
    # A crash after the complete copy was marked and the old folder set aside: the copy takes over.
    compact(shard, _open)  # a real rewrite, to copy from
    fresh = fresh_path(shard)
    shard.rename(fresh)
    (fresh / COMPLETE_MARKER).write_text("30\n")
    store = _open(shard)
    try:
        assert store.count_user("kept") == 30
    finally:
        store.close()
    assert not fresh.exists()
    # A crash during the copy: the unfinished copy is dropped and the original stands.
    fresh.mkdir()
    (fresh / "partial").write_text("half a shard")
    store = _open(shard)
    try:
        assert store.count_user("kept") == 30
    finally:
        store.close()
    assert not fresh.exists()
    # A crash after the old folder was set aside but before a complete copy existed: it comes back.
    retired = retired_path(shard)
    shard.rename(retired)
    fresh.mkdir()
    store = _open(shard)
    try:
        assert store.count_user("kept") == 30
    finally:
        store.close()
    assert not fresh.exists() and not retired.exists()


def test_the_tool_compacts_the_configured_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    canary = f"CANARY-{uuid.uuid4().hex}"
    shard = data / "qdrant" / "memories"
    _fill(shard, canary)
    env = {**os.environ, "DATA_DIR": str(data), "EMBEDDING_DIMS": str(DIMS), "COLLECTION_NAME": "memories"}
    done = subprocess.run(
        [sys.executable, "-m", "tools.ops.compact_store"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "30 memories kept" in done.stdout
    assert _files_holding(shard, canary) == []
