"""Where mem0's per-memory history (and its message log) is kept.

mem0 writes history through `Memory.db`; the service swaps that object for the configured store.
Locally it is mem0's own SQLite manager on a file under DATA_DIR (one machine, one process). With
STATE_STORE=azure_table it is a Table Storage table shared by every worker.
"""

from __future__ import annotations

from typing import Any

from shared.settings import Settings


def build_history_store(settings: Settings) -> Any:
    if settings.resolved_state_store == "azure_table":
        from shared.table_state import TableHistoryStore

        return TableHistoryStore(settings)
    from mem0.memory.storage import SQLiteManager

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteManager(str(settings.data_dir / "history.db"))
