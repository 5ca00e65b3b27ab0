"""The erasure epoch of each user: what makes deleting a user a barrier for work already under way.

Deleting a user (`DELETE /api/memory/user/{id}`) first moves the user to a new epoch, then erases.
Every writer that acts for a user over time (an ingestion event from its creation, a chat turn from
its start) holds the epoch it started in and reads the user's epoch again before and after it
writes. Work that finds a different epoch lost the race to an erasure: it removes what it wrote
and ends `cancelled` (shared/memory/ingest.py, shared/chat/agent.py). Because the epoch moves
before anything is erased, a writer whose check after its write still sees its own epoch wrote
before the erasure began, so the erasure finds and removes it; a writer that sees the new epoch
removes its writes itself. Either way nothing of the erased user is left behind.

An epoch is an opaque token: "" for a user never erased, a new random token per erasure (so moving
it is one blind write, never a read-modify-write two erasures could interleave). The epoch never
blocks the user: work that starts after the erasure holds the new epoch and proceeds normally.
Markers are kept for good (a few bytes per erased user): a queue message may wait days, and a
marker removed before it is delivered would let its event through. A marker is keyed by a digest
of the user's storage key, not the key itself, so it does not name the erased user.

It lives where the ingestion events live (shared/stores/state/events.py): a file per user under
DATA_DIR/events/erased locally, a row in the events table with shared state, so every worker that
can see an event sees the epoch it is checked against.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

from shared.settings import Settings

_ROW = "epoch"


class ErasureLedger(Protocol):
    """The users' erasure epochs."""

    def epoch(self, user_id: str) -> str:
        """The user's current epoch ("" if the user was never erased)."""
        ...

    def advance(self, user_id: str) -> str:
        """Moves the user to a new epoch (the first step of erasing the user); returns it."""
        ...


def marker_digest(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:40]


def _new_epoch() -> str:
    return uuid.uuid4().hex


class LocalErasureLedger:
    """One small file per erased user (write-then-rename: a reader sees the old token or the new one)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _path(self, user_id: str) -> Path:
        return self.root / marker_digest(user_id)

    def epoch(self, user_id: str) -> str:
        path = self._path(user_id)
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return ""

    def advance(self, user_id: str) -> str:
        token = _new_epoch()
        path = self._path(user_id)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_text(token, encoding="utf-8")
            os.replace(tmp, path)
        return token


class TableErasureLedger:
    """One row per erased user in the events table (PartitionKey `erased|<digest>`, RowKey `epoch`)."""

    def __init__(self, settings: Settings) -> None:
        from shared.stores.state.tables import _Tables

        self._tables = _Tables(settings)
        self._name = settings.events_table

    def _table(self) -> Any:
        return self._tables.table(self._name)

    def epoch(self, user_id: str) -> str:
        from azure.core.exceptions import ResourceNotFoundError

        from shared.stores.state.tables import table_calls

        with table_calls("read erasure epoch"):
            try:
                entity = self._table().get_entity(_partition(user_id), _ROW)
            except ResourceNotFoundError:
                return ""
        return str(entity.get("epoch") or "")

    def advance(self, user_id: str) -> str:
        from azure.data.tables import UpdateMode

        from shared.stores.state.tables import table_calls

        token = _new_epoch()
        with table_calls("advance erasure epoch"):
            self._table().upsert_entity(
                {"PartitionKey": _partition(user_id), "RowKey": _ROW, "epoch": token}, mode=UpdateMode.REPLACE
            )
        return token

    def close(self) -> None:
        self._tables.close()


def _partition(user_id: str) -> str:
    # `|` never occurs in an event id's partition; the digest is hex, so no key character is forbidden.
    return f"erased|{marker_digest(user_id)}"


def build_erasure_ledger(settings: Settings) -> ErasureLedger:
    """Beside the ingestion events: in Table Storage when events are, else files under DATA_DIR."""
    if settings.resolved_event_store == "azure_table":
        return TableErasureLedger(settings)
    return LocalErasureLedger(settings.data_dir / "events" / "erased")
