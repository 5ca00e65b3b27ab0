"""The door to mem0 (shared/memory/mem0_engine.py) on the real mem0, and the local history store
(shared/stores/state/history.py) against mem0's own SQLite history, whose file layout it keeps.

The vector store and the embedder are the in-memory fakes of tests/fixtures: mem0 writes through
them exactly as through an adapter (each adapter's own mem0 test is in tests/integration/test_store_*.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.memory.mem0_engine import Mem0Engine, build_memory, prepare_mem0_environment, user_scope_part
from shared.settings import Settings
from shared.stores.state.history import LocalHistoryStore
from tests.fixtures.fake_core import DIMS, FakeEmbedder
from tests.fixtures.fake_stores import FakeVectorStore
from tests.helpers import REPO, base_env


class ExtractingLlm:
    """mem0's LLM interface: every extraction answers the facts given, as JSON."""

    def __init__(self, *facts: str) -> None:
        self.facts = facts
        self.prompts: list[str] = []

    def generate_response(self, messages: list[dict[str, str]], response_format: Any = None, **_: Any) -> str:
        self.prompts.append(messages[-1]["content"])
        return json.dumps({"memory": [{"id": str(i), "text": fact} for i, fact in enumerate(self.facts)]})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    built = Settings(data_dir=tmp_path / "data", llm_provider="none", state_store="local", graph_store="none")
    prepare_mem0_environment(built)
    return built


@pytest.fixture
def history(tmp_path: Path) -> Iterator[LocalHistoryStore]:
    store = LocalHistoryStore(str(tmp_path / "history.db"))
    yield store
    store.close()


def test_the_assembly_sets_every_part_mem0s_own_constructor_sets(
    settings: Settings, history: LocalHistoryStore
) -> None:
    # mem0's constructor builds its parts from provider names; the door's builder gives ours. If an
    # upgrade of mem0 adds a part, its constructor sets an attribute the builder does not: caught here.
    from mem0 import Memory
    from mem0.configs.base import MemoryConfig
    from qdrant_client import QdrantClient

    config = MemoryConfig(
        vector_store={
            "provider": "qdrant",
            "config": {"embedding_model_dims": DIMS, "client": QdrantClient(":memory:")},
        },
        embedder={"provider": "openai", "config": {"api_key": "unused", "embedding_dims": DIMS}},
        llm={"provider": "openai", "config": {"api_key": "unused"}},
        history_db_path=":memory:",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # local mode's note on payload indexes
        theirs = Memory(config)
    ours = build_memory(settings, FakeEmbedder(), ExtractingLlm(), history, FakeVectorStore())
    try:
        assert set(vars(theirs)) - {"_telemetry_vector_store"} <= set(vars(ours))
        assert (ours.embedding_model.dims, ours.db.history, ours.reranker) == (DIMS, history, None)
    finally:
        theirs.db.close()


def test_mem0_is_imported_on_the_first_call_not_before(settings: Settings, history: LocalHistoryStore) -> None:
    engine = Mem0Engine(settings, FakeEmbedder(), ExtractingLlm(), history, FakeVectorStore())
    assert engine._memory.peek() is None  # built, and nothing of mem0 assembled yet
    engine.load()
    assert type(engine.memory).__module__ == "mem0.memory.main"


def _stored(store: FakeVectorStore, history: LocalHistoryStore, text: str, payload: dict[str, Any]) -> str:
    """A memory as the service's add writes it (its own batch path: the store, then an ADD row)."""
    memory_id, now = str(uuid.uuid4()), "2026-01-01T00:00:00Z"
    stored = {**payload, "data": text, "created_at": now, "updated_at": now}
    store.insert([FakeEmbedder().embed(text, "add")], [stored], [memory_id])
    history.add_history(memory_id, None, text, "ADD", created_at=now, updated_at=now)
    return memory_id


def test_update_writes_the_store_and_the_history(settings: Settings, history: LocalHistoryStore) -> None:
    store = FakeVectorStore()
    llm = ExtractingLlm("Owns a black cat named Miso", "Lives in Porto")
    engine = Mem0Engine(settings, FakeEmbedder(), llm, history, store)

    memory_id = _stored(store, history, "I like green tea", {"user_id": "alice", "agent_id": "barista", "k": "v"})
    engine.update(memory_id, "I like black tea", {"mood": "bold"})
    payload = store.points[memory_id][1]
    assert (payload["data"], payload["user_id"], payload["agent_id"], payload["k"], payload["mood"]) == (
        "I like black tea",
        "alice",
        "barista",
        "v",
        "bold",
    )
    assert [(r["event"], r["old_memory"], r["new_memory"]) for r in history.get_history(memory_id)] == [
        ("ADD", None, "I like green tea"),
        ("UPDATE", "I like green tea", "I like black tea"),
    ]


class DeletedMidUpdate(FakeVectorStore):
    """A delete of the memory lands after mem0's update read it and before it writes."""

    def update(self, vector_id: str, vector: Any = None, payload: Any = None) -> None:
        self.delete(vector_id)
        super().update(vector_id, vector, payload)


def test_an_update_racing_a_delete_writes_no_history_row(settings: Settings, history: LocalHistoryStore) -> None:
    store = DeletedMidUpdate()
    engine = Mem0Engine(settings, FakeEmbedder(), ExtractingLlm(), history, store)
    memory_id = _stored(store, history, "I like green tea", {"user_id": "alice"})
    history.erase_memories([memory_id])  # as the delete does, before it removes the memory
    engine.update(memory_id, "I like black tea", None)
    assert memory_id not in store.points and history.get_history(memory_id) == []


def test_user_scope_part_is_a_part_of_every_scope_naming_the_user() -> None:
    from mem0.memory.main import _build_session_scope

    for user in ("alice", "a&b=c%d"):
        assert _build_session_scope({"user_id": user}) == user_scope_part(user)
        assert user_scope_part(user) in _build_session_scope({"user_id": user, "agent_id": "x"}).split("&")


def test_the_local_history_reads_and_erases_a_file_mem0_wrote(tmp_path: Path) -> None:
    from mem0.memory.storage import SQLiteManager

    path = str(tmp_path / "history.db")
    theirs = SQLiteManager(path)
    theirs.add_history("m1", None, "first", "ADD", created_at="2026-01-01T00:00:00+00:00", role="user")
    theirs.add_history(
        "m1",
        "first",
        "second",
        "UPDATE",
        created_at="2026-01-01T00:00:00+00:00",
        updated_at="2026-01-02T00:00:00+00:00",
    )
    theirs.batch_add_history([{"memory_id": "m2", "new_memory": "other", "event": "ADD"}])
    theirs.save_messages([{"role": "user", "content": "hello"}], "agent_id=a&user_id=alice")
    expected = theirs.get_history("m1")
    theirs.close()

    ours = LocalHistoryStore(path)
    try:
        assert ours.get_history("m1") == expected
        assert ours.get_last_messages("agent_id=a&user_id=alice")[0]["content"] == "hello"
        ours.add_history("m2", "other", "changed", "UPDATE")
        assert [r["event"] for r in ours.get_history("m2")] == ["ADD", "UPDATE"]
        assert ours.erase_memories(["m1"]) == 2 and ours.get_history("m1") == []
        assert ours.erase_messages(user_scope_part("bob")) == 0 and ours.erase_messages(user_scope_part("alice")) == 1
    finally:
        ours.close()
    again = SQLiteManager(path)  # and mem0 reads what ours wrote
    assert [r["event"] for r in again.get_history("m2")] == ["ADD", "UPDATE"] and again.get_history("m1") == []
    again.close()


def test_a_failed_batch_writes_no_history_row(history: LocalHistoryStore) -> None:
    with pytest.raises(Exception):  # noqa: B017 - whichever error SQLite raises for the bad row
        history.batch_add_history([{"memory_id": "m1", "event": "ADD"}, {"memory_id": object(), "event": "ADD"}])
    assert history.get_history("m1") == []


FIRST_SEARCH_THEN_WRITE = """
import sys
from shared import runtime

service = runtime.get_memory_service()
service.search_memories("someone", "hello", 1)
print("after search:", "mem0" in sys.modules, "sqlite3" in sys.modules)
added = service.add_memory("someone", "hello there")
print("after add:", "mem0" in sys.modules, [row["event"] for row in service.memory_history(added.id, "someone")])
service.update_memory(added.id, "hello again", None, "someone")
print("after update:", "mem0" in sys.modules, [row["event"] for row in service.memory_history(added.id, "someone")])
runtime.reset()
"""


def test_a_workers_first_search_and_add_import_neither_mem0_nor_the_history(tmp_path: Path) -> None:
    # A fresh interpreter, as a new worker: what the first search loads is what its cold start pays.
    done = subprocess.run(
        [sys.executable, "-c", FIRST_SEARCH_THEN_WRITE],
        cwd=REPO,
        env=base_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-3:] == [
        "after search: False False",
        "after add: False ['ADD']",  # an add is the service's own batch path
        "after update: True ['ADD', 'UPDATE']",  # mem0 is loaded by the first update
    ]
