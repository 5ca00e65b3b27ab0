"""The history stores on their real backends, the local SQLite file and Table Storage (Azurite): a batch
read (what an export page makes) answers each memory's own rows, oldest first, as its single read does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.stores.state.history import HistoryStore, LocalHistoryStore
from shared.stores.state.tables import TableHistoryStore
from tools.harness.azurite import AzuriteServer


@pytest.fixture(params=["local", "azure_table"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    if request.param == "local":
        store: HistoryStore = LocalHistoryStore(str(tmp_path / "history.db"))
    else:
        azurite: AzuriteServer = request.getfixturevalue("azurite")
        settings = Settings(
            data_dir=tmp_path,
            state_store="azure_table",
            azure_tables_connection_string=azurite.connection_string,
            history_table=f"history{uuid.uuid4().hex[:8]}",
        )
        store = TableHistoryStore(settings)
    yield store
    store.close()


def test_a_batch_read_answers_each_memorys_own_rows_oldest_first(history: HistoryStore) -> None:
    ids = [str(uuid.uuid4()) for _ in range(20)]
    rows = [
        {
            "memory_id": m,
            "old_memory": None,
            "new_memory": f"text {n}",
            "event": "ADD",
            "created_at": "2024-05-01T00:00:00",
        }
        for n, m in enumerate(ids)
    ]
    history.batch_add_history(rows)
    for n, memory_id in enumerate(ids[:5]):
        history.add_history(
            memory_id, f"text {n}", f"text {n}, changed", "UPDATE", created_at="2024-05-02T00:00:00",
            updated_at="2024-05-02T00:00:00",
        )  # fmt: skip
    unknown = str(uuid.uuid4())
    found = history.get_histories([*ids, unknown])
    assert set(found) == set(ids)  # a memory without rows is absent
    assert found == {memory_id: history.get_history(memory_id) for memory_id in ids}
    assert [row["event"] for row in found[ids[0]]] == ["ADD", "UPDATE"] and found[ids[0]][1]["old_memory"] == "text 0"
    assert all(row["memory_id"] == m for m, memory_rows in found.items() for row in memory_rows)
    assert history.get_histories(ids[7:9]) == {m: found[m] for m in ids[7:9]} and history.get_histories([]) == {}


def test_a_local_batch_read_of_more_ids_than_one_query_takes(tmp_path: Path) -> None:
    history = LocalHistoryStore(str(tmp_path / "history.db"))
    ids = [str(uuid.uuid4()) for _ in range(1_200)]
    history.batch_add_history([{"memory_id": m, "new_memory": "x", "event": "ADD"} for m in ids[::100]])
    assert set(history.get_histories(ids)) == set(ids[::100])
    history.close()
