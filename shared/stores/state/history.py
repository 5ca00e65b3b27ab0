"""Where each memory's history (and mem0's message log) is kept, and how it is erased.

`HistoryStore` is what writes and reads it: mem0, which is given the store as its `db` (its change
rows and the last messages of a scope it feeds its extraction prompt), and the memory service (a
batch add's rows, a memory's history, erasure). Locally it is a SQLite file under DATA_DIR (one
machine, one process), in the layout mem0's own SQLite history uses, with SQLite's `secure_delete`
on so that erased rows are overwritten in the file, not left in free pages. With
STATE_STORE=azure_table it is a Table Storage table shared by every worker (tables.py).

Both stores can erase: every history row of given memories (their texts are the old and new
versions of the memory), and every message mem0 logged for a user (the raw turns it extracted
from), so that deleting a memory or a user deletes its text everywhere the service wrote it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.lazy import Lazy
from shared.settings import Settings

if TYPE_CHECKING:
    import sqlite3

# A history row: memory_id, old_memory, new_memory, event (ADD, UPDATE, DELETE), created_at,
# updated_at, is_deleted, actor_id, role; `get_history` adds the row's own `id`.
HistoryRow = dict[str, Any]


class HistoryStore(Protocol):
    """Per-memory change rows and mem0's message log, both erasable."""

    def add_history(
        self,
        memory_id: str,
        old_memory: str | None,
        new_memory: str | None,
        event: str,
        *,
        created_at: str | None = None,
        updated_at: str | None = None,
        is_deleted: int = 0,
        actor_id: str | None = None,
        role: str | None = None,
    ) -> None: ...

    def batch_add_history(self, records: list[HistoryRow]) -> None: ...

    def get_history(self, memory_id: str) -> list[HistoryRow]: ...

    def get_histories(self, memory_ids: list[str]) -> dict[str, list[HistoryRow]]:
        """The rows of each of `memory_ids` (oldest first; a memory without any is absent), in one
        batched read: what an export page reads."""
        ...

    def save_messages(self, messages: list[dict[str, Any]], session_scope: str) -> None: ...

    def get_last_messages(self, session_scope: str, limit: int = 10) -> list[dict[str, Any]]: ...

    def erase_memories(self, memory_ids: list[str]) -> int: ...

    def erase_messages(self, scope_part: str) -> int:
        """Deletes the messages of every session scope that has `scope_part` among its `&`-separated parts
        (how mem0 names a user: `shared.memory.mem0_engine.user_scope_part`); returns how many."""
        ...

    def close(self) -> None: ...


_COLUMNS = (
    "memory_id", "old_memory", "new_memory", "event", "created_at", "updated_at", "is_deleted", "actor_id", "role"
)  # fmt: skip
_INSERT_ROW = f"INSERT INTO history (id, {', '.join(_COLUMNS)}) VALUES (?{', ?' * len(_COLUMNS)})"  # noqa: S608 - names only
_KEPT_MESSAGES = 10  # per scope, as mem0 keeps them: its prompt reads the last ten
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS history (
        id TEXT PRIMARY KEY, memory_id TEXT, old_memory TEXT, new_memory TEXT, event TEXT,
        created_at DATETIME, updated_at DATETIME, is_deleted INTEGER, actor_id TEXT, role TEXT)""",
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, session_scope TEXT, role TEXT, content TEXT, name TEXT, created_at DATETIME)""",
    # a memory's rows are read (a history, an export page) and erased by its id
    "CREATE INDEX IF NOT EXISTS history_memory_id ON history (memory_id)",
)
_BATCH = 500  # ids per query: under SQLite's bound on the parameters of one statement


class LocalHistoryStore:
    """The history in one SQLite file, shared by the threads of a worker (one connection, one lock).
    The file is opened on first use: a worker's first search does not wait for it."""

    def __init__(self, db_path: str) -> None:
        self._db: Lazy[sqlite3.Connection] = Lazy(lambda: _open(db_path))
        self._lock = threading.Lock()

    @property
    def _connection(self) -> sqlite3.Connection:
        return self._db.get()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection
        with self._lock:
            connection.execute("BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def add_history(
        self,
        memory_id: str,
        old_memory: str | None,
        new_memory: str | None,
        event: str,
        *,
        created_at: str | None = None,
        updated_at: str | None = None,
        is_deleted: int = 0,
        actor_id: str | None = None,
        role: str | None = None,
    ) -> None:
        values = (memory_id, old_memory, new_memory, event, created_at, updated_at, is_deleted, actor_id, role)
        self.batch_add_history([dict(zip(_COLUMNS, values, strict=True))])

    def batch_add_history(self, records: list[HistoryRow]) -> None:
        """All the rows or none (one transaction)."""
        rows = [
            (str(uuid.uuid4()), *(record.get(c, 0 if c == "is_deleted" else None) for c in _COLUMNS))
            for record in records
        ]
        with self._transaction() as db:
            db.executemany(_INSERT_ROW, rows)

    def get_history(self, memory_id: str) -> list[HistoryRow]:
        """The memory's rows, oldest first."""
        return self.get_histories([memory_id]).get(memory_id, [])

    def get_histories(self, memory_ids: list[str]) -> dict[str, list[HistoryRow]]:
        """The rows of each memory, oldest first: one query per 500 ids."""
        found: dict[str, list[HistoryRow]] = {}
        connection = self._connection
        for start in range(0, len(memory_ids), _BATCH):
            chunk = memory_ids[start : start + _BATCH]
            marks = ",".join("?" for _ in chunk)
            with self._lock:
                rows = connection.execute(
                    f"SELECT id, {', '.join(_COLUMNS)} FROM history WHERE memory_id IN ({marks})"  # noqa: S608 - names and placeholders only
                    " ORDER BY created_at ASC, DATETIME(updated_at) ASC",
                    chunk,
                ).fetchall()
            for row in rows:
                entry = dict(zip(("id", *_COLUMNS), row, strict=True))
                entry["is_deleted"] = bool(entry["is_deleted"])
                found.setdefault(str(entry["memory_id"]), []).append(entry)
        return found

    def save_messages(self, messages: list[dict[str, Any]], session_scope: str) -> None:
        """Logs messages of a scope, keeping its last ten."""
        if not messages:
            return
        now = datetime.now(UTC).isoformat()  # microseconds: the order of a scope's messages
        rows = [
            (str(uuid.uuid4()), session_scope, m.get("role"), m.get("content"), m.get("name"), now) for m in messages
        ]
        with self._transaction() as db:
            db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute(
                "DELETE FROM messages WHERE session_scope = ? AND id NOT IN (SELECT id FROM"
                " (SELECT id FROM messages WHERE session_scope = ? ORDER BY created_at DESC LIMIT ?))",
                (session_scope, session_scope, _KEPT_MESSAGES),
            )

    def get_last_messages(self, session_scope: str, limit: int = 10) -> list[dict[str, Any]]:
        """The scope's last `limit` messages, oldest first."""
        connection = self._connection
        with self._lock:
            rows = connection.execute(
                "SELECT role, content, name, created_at FROM (SELECT role, content, name, created_at FROM messages"
                " WHERE session_scope = ? ORDER BY created_at DESC LIMIT ?) ORDER BY created_at ASC",
                (session_scope, limit),
            ).fetchall()
        return [dict(zip(("role", "content", "name", "created_at"), row, strict=True)) for row in rows]

    def erase_memories(self, memory_ids: list[str]) -> int:
        """Deletes every history row of these memories; returns how many."""
        if not memory_ids:
            return 0
        marks = ",".join("?" for _ in memory_ids)
        with self._transaction() as db:
            erased = int(db.execute(f"DELETE FROM history WHERE memory_id IN ({marks})", memory_ids).rowcount or 0)  # noqa: S608 - placeholders only
        self._checkpoint()
        return erased

    def erase_messages(self, scope_part: str) -> int:
        """Deletes every message mem0 logged in a session scope with this part (a user); returns how many."""
        part = scope_part
        with self._transaction() as db:
            scopes = [row[0] for row in db.execute("SELECT DISTINCT session_scope FROM messages")]
            mine = [scope for scope in scopes if part in scope.split("&")]
            erased = sum(
                int(db.execute("DELETE FROM messages WHERE session_scope = ?", (scope,)).rowcount or 0)
                for scope in mine
            )
        self._checkpoint()
        return erased

    def _checkpoint(self) -> None:
        """Moves the log into the file and empties it: erased rows' old pages live on in the log until then."""
        connection = self._connection
        with self._lock:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        connection = self._db.reset()
        if connection is not None:
            with self._lock:
                connection.close()


def _open(db_path: str) -> sqlite3.Connection:
    import sqlite3

    connection = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA secure_delete = ON")
    # A write-ahead log, synced at checkpoints: a commit is an append. With the rollback journal
    # every history row cost several fsyncs (15-20 ms of wall time here), taken under the store's
    # lock, so concurrent adds queued behind each other. A commit survives a crash of the process;
    # a power cut may lose the last ones, as it may the embedded vector store's own unflushed
    # writes, which this file only describes.
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    for statement in _SCHEMA:
        connection.execute(statement)
    return connection


def build_history_store(settings: Settings) -> HistoryStore:
    if settings.resolved_state_store == "azure_table":
        from shared.stores.state.tables import TableHistoryStore

        return TableHistoryStore(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return LocalHistoryStore(str(settings.data_dir / "history.db"))
