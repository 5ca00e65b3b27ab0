"""Where mem0's per-memory history (and its message log) is kept, and how it is erased.

mem0 writes history through `Memory.db`; the service swaps that object for the configured store.
Locally it is mem0's own SQLite manager on a file under DATA_DIR (one machine, one process), with
SQLite's `secure_delete` on so that erased rows are overwritten in the file, not left in free
pages. With STATE_STORE=azure_table it is a Table Storage table shared by every worker.

Both stores can erase: every history row of given memories (their texts are the old and new
versions of the memory), and every message mem0 logged for a user (the raw turns it extracted
from), so that deleting a memory or a user deletes its text everywhere the service wrote it.
"""

from __future__ import annotations

from typing import Any

from mem0.memory.storage import SQLiteManager

from shared.settings import Settings


def scope_mentions_user(scope: str, user_id: str) -> bool:
    """Whether a mem0 session scope ("agent_id=a&user_id=u") is one of `user_id`'s."""
    from mem0.memory.main import _escape_scope_value

    return f"user_id={_escape_scope_value(user_id)}" in scope.split("&")


class LocalHistoryStore(SQLiteManager):  # type: ignore[misc]  # mem0 ships no type information
    """mem0's SQLite history on a file, which can also erase a memory's history and a user's messages."""

    def __init__(self, db_path: str) -> None:
        super().__init__(db_path)
        with self._lock:
            self.connection.execute("PRAGMA secure_delete = ON")
            # A write-ahead log, synced at checkpoints: a commit is an append. With the rollback
            # journal every history row cost several fsyncs (15-20 ms of wall time here), taken
            # under the store's lock, so concurrent adds queued behind each other. A commit
            # survives a crash of the process; a power cut may lose the last ones, as it may the
            # embedded vector store's own unflushed writes, which this file only describes.
            self.connection.execute("PRAGMA journal_mode = WAL")
            self.connection.execute("PRAGMA synchronous = NORMAL")

    def _checkpoint(self) -> None:
        """Moves the log into the file and empties it: erased rows' old pages live on in the log until then."""
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def erase_memories(self, memory_ids: list[str]) -> int:
        """Deletes every history row of these memories; returns how many."""
        if not memory_ids:
            return 0
        with self._lock, self.connection:
            marks = ",".join("?" for _ in memory_ids)
            cursor = self.connection.execute(f"DELETE FROM history WHERE memory_id IN ({marks})", memory_ids)  # noqa: S608 - placeholders only
            erased = int(cursor.rowcount or 0)
        with self._lock:
            self._checkpoint()
        return erased

    def erase_user_messages(self, user_id: str) -> int:
        """Deletes every message mem0 logged in a session scope of `user_id`; returns how many."""
        with self._lock, self.connection:
            scopes = [row[0] for row in self.connection.execute("SELECT DISTINCT session_scope FROM messages")]
            mine = [scope for scope in scopes if scope_mentions_user(scope, user_id)]
            erased = 0
            for scope in mine:
                erased += int(
                    self.connection.execute("DELETE FROM messages WHERE session_scope = ?", (scope,)).rowcount or 0
                )
        with self._lock:
            self._checkpoint()
        return erased


def build_history_store(settings: Settings) -> Any:
    if settings.resolved_state_store == "azure_table":
        from shared.stores.state.tables import TableHistoryStore

        return TableHistoryStore(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return LocalHistoryStore(str(settings.data_dir / "history.db"))
