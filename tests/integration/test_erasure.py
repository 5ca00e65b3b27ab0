"""Deleting erases: after a memory or a user is deleted, no store the service writes on the zero-setup
default holds its text (history, mem0's message log, chat sessions), and a search or export finds
nothing. The embedded engine's own files are checked through the engine (see the README for what
its write-ahead log keeps until it compacts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import factory
from shared.contract import MemoryInput
from shared.factory import build_session_store
from shared.memory.service import MemoryService
from shared.settings import Settings
from shared.stores.state.sessions import Turn
from tests.helpers import local_model_path


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryService]:
    settings = Settings(data_dir=tmp_path / "data", local_embedding_model_path=local_model_path(), state_store="local")
    built = factory.build_memory_service(settings, build_session_store(settings))
    yield built
    built.close()


def _files_holding(root: Path, canary: str) -> list[str]:
    """Files under `root` (the engine's shard folder left out) whose bytes hold `canary`."""
    needle = canary.encode()
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and "qdrant" not in path.relative_to(root).parts and needle in path.read_bytes()
    ]


def test_deleting_a_user_erases_their_words_from_every_store(service: MemoryService) -> None:
    user, other = f"erase-{uuid.uuid4().hex[:6]}", f"keep-{uuid.uuid4().hex[:6]}"
    canary, updated, said, kept = (f"{word}{uuid.uuid4().hex}" for word in ("canary", "updated", "said", "kept"))
    [memory_id] = service.add_memories(user, [MemoryInput(content=f"I keep a {canary} at home")])
    service.update_memory(memory_id, f"I keep an {updated} at home", None, user)  # history: old + new text
    service.add_memory(user, "a second memory")
    service.history.save_messages([{"role": "user", "content": f"I said {said}"}], f"user_id={user}")  # mem0's log
    service.sessions.append_turn(user, "s1", Turn(f"I said {said}", "noted", "2026-01-01T00:00:00+00:00", []))
    service.add_memory(other, f"another user's {kept}")
    root = service.settings.data_dir
    assert _files_holding(root, canary) and _files_holding(root, said)  # the check can see them

    assert service.delete_user_memories(user) == 2
    for word in (canary, updated, said):
        assert _files_holding(root, word) == [], word
    assert service.list_memories(user) == [] and service.search_memories(user, canary, 10) == []
    assert service.export_memories(user).items == [] and service.sessions.export_user(user) == {}
    assert service.history.get_history(memory_id) == []
    assert service.store.count_user(user) == 0
    # nothing of anybody else's was touched
    assert _files_holding(root, kept) and [m.memory for m in service.list_memories(other)] == [f"another user's {kept}"]

    assert service.delete_user_memories(user) == 0  # a retry (or a second delete) is harmless


def test_deleting_a_memory_erases_its_history(service: MemoryService) -> None:
    user = f"erase-{uuid.uuid4().hex[:6]}"
    canary = f"canary{uuid.uuid4().hex}"
    [memory_id] = service.add_memories(user, [MemoryInput(content=f"I keep a {canary} at home")])
    service.update_memory(memory_id, "something else", None, user)
    [kept_id] = service.add_memories(user, [MemoryInput(content="kept")])
    service.delete_memory(memory_id, user)
    assert _files_holding(service.settings.data_dir, canary) == []
    assert service.history.get_history(memory_id) == []
    assert [row["event"] for row in service.history.get_history(kept_id)] == ["ADD"]
    assert [m.id for m in service.list_memories(user)] == [kept_id]
