"""Ingestion events: what an asynchronous add or a chat turn's learning asked for, and how far it got.

An event is the unit the queue delivers and the unit a client polls (`GET /api/memory/events/{id}`).
It holds its input (the memories to add, or the exchange to learn from) until it succeeded, so a
queue message only carries the event's id: messages stay far below the queue's 64 KiB, and a
redelivered or replayed message always finds the one input it refers to. Once an event succeeded
its input is dropped (the memories now hold that text, and deleting them must leave no copy).

`LocalEventStore` (zero-setup default) keeps one JSON file per event under DATA_DIR/events.
`TableEventStore` keeps them in Table Storage: PartitionKey = event id, one `state` row and the
input in rows of at most 30,000 characters (a string property holds 32K UTF-16 units), so one
partition read returns everything an event is.

Both also index each event under its user (a marker file in `users/<user>/`, a row in the
partition `user|<user>`), so deleting a user touches that user's events only, never all of them.
`save` only ever rewrites an event that exists: an event deleted with its user (while a worker
still held it) is never written back, so no state row outlives its user's index.

Each event records the erasure epoch of its user when it was created (shared/stores/state/erasure.py):
an event of an earlier epoch belongs to a user since erased and is cancelled, never run.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from shared.settings import Settings

EventStatus = Literal["queued", "processing", "succeeded", "failed", "cancelled"]
EventKind = Literal["add", "batch_add", "learn"]
_CHUNK = 30_000
_STATE_ROW = "state"


@dataclass
class IngestEvent:
    event_id: str
    user_id: str
    kind: EventKind
    status: EventStatus
    created_at: str
    updated_at: str
    memory_ids: list[str] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0  # attempts started; above zero, an attempt may have left writes to purge
    epoch: str = ""  # the user's erasure epoch when the event was created


class EventStore(Protocol):
    def create(self, event: IngestEvent, job: dict[str, Any]) -> None: ...

    def get(self, event_id: str) -> IngestEvent | None: ...

    def job(self, event_id: str) -> dict[str, Any] | None: ...

    def save(self, event: IngestEvent) -> bool:
        """Rewrites an existing event; False (and nothing written) when the event is gone."""
        ...

    def drop_job(self, event_id: str) -> None: ...

    def delete(self, event: IngestEvent) -> None:
        """The event, its input and its entry in the user's index (a cancelled event's end)."""
        ...

    def delete_user(self, user_id: str) -> int: ...


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class LocalEventStore:
    """One JSON file per event (write-then-rename, so a crash leaves the old state or the new one)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _path(self, event_id: str) -> Path:
        return self.root / f"{_digest(event_id)}.json"

    def _read(self, event_id: str) -> dict[str, Any] | None:
        path = self._path(event_id)
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def _write(self, event_id: str, data: dict[str, Any]) -> None:
        path = self._path(event_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def _user_dir(self, user_id: str) -> Path:
        return self.root / "users" / _digest(user_id)

    def create(self, event: IngestEvent, job: dict[str, Any]) -> None:
        with self._lock:
            marker = self._user_dir(event.user_id) / _digest(event.event_id)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(event.event_id, encoding="utf-8")  # first: an event is never unindexed
            self._write(event.event_id, {"event": asdict(event), "job": job})

    def get(self, event_id: str) -> IngestEvent | None:
        with self._lock:
            data = self._read(event_id)
        return IngestEvent(**data["event"]) if data else None

    def job(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            data = self._read(event_id)
        return data.get("job") if data else None

    def save(self, event: IngestEvent) -> bool:
        with self._lock:
            data = self._read(event.event_id)
            if data is None:
                return False  # deleted with its user: never written back
            data["event"] = asdict(event)
            self._write(event.event_id, data)
        return True

    def drop_job(self, event_id: str) -> None:
        with self._lock:
            data = self._read(event_id)
            if data is not None and data.get("job") is not None:
                data["job"] = None
                self._write(event_id, data)

    def delete(self, event: IngestEvent) -> None:
        with self._lock:
            self._path(event.event_id).unlink(missing_ok=True)
            (self._user_dir(event.user_id) / _digest(event.event_id)).unlink(missing_ok=True)

    def delete_user(self, user_id: str) -> int:
        """The user's events, inputs included: the user's index, not a scan of every event."""
        count = 0
        with self._lock:
            folder = self._user_dir(user_id)
            for marker in sorted(folder.glob("*")) if folder.exists() else []:
                event_file = self._path(marker.read_text(encoding="utf-8"))
                if event_file.exists():
                    event_file.unlink()
                    count += 1
                marker.unlink()
            if folder.exists():
                folder.rmdir()
        return count


class TableEventStore:
    def __init__(self, settings: Settings) -> None:
        from shared.stores.state.tables import _Tables

        self._tables = _Tables(settings)
        self._name = settings.events_table

    def _table(self) -> Any:
        return self._tables.table(self._name)

    def create(self, event: IngestEvent, job: dict[str, Any]) -> None:
        from shared.stores.state.tables import encode_key, table_calls

        partition = encode_key(event.event_id)
        text = json.dumps(job, ensure_ascii=False)
        chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        with table_calls("write event"):
            table = self._table()
            # The user's index first (an event is never unindexed), then the input rows: a state row
            # is only ever found with its whole input beside it.
            table.upsert_entity({"PartitionKey": _user_partition(event.user_id), "RowKey": partition})
            for index, chunk in enumerate(chunks):
                table.upsert_entity({"PartitionKey": partition, "RowKey": f"job-{index:05d}", "text": chunk})
            table.upsert_entity(self._entity(event, job_rows=len(chunks)))

    def _entity(self, event: IngestEvent, job_rows: int | None = None) -> dict[str, Any]:
        from shared.stores.state.tables import encode_key

        entity: dict[str, Any] = {
            "PartitionKey": encode_key(event.event_id),
            "RowKey": _STATE_ROW,
            "event_id": event.event_id,
            "user_id": event.user_id,
            "kind": event.kind,
            "status": event.status,
            "created_at": event.created_at,
            "updated_at": event.updated_at,
            "memory_ids": json.dumps(event.memory_ids),
            "error": (event.error or "")[:_CHUNK],
            "attempts": event.attempts,
            "epoch": event.epoch,
        }
        if job_rows is not None:
            entity["job_rows"] = job_rows
        return entity

    def get(self, event_id: str) -> IngestEvent | None:
        from azure.core.exceptions import ResourceNotFoundError

        from shared.stores.state.tables import encode_key, table_calls

        with table_calls("read event"):
            try:
                entity = self._table().get_entity(encode_key(event_id), _STATE_ROW)
            except ResourceNotFoundError:
                return None
        return IngestEvent(
            event_id=entity["event_id"],
            user_id=entity["user_id"],
            kind=entity["kind"],
            status=entity["status"],
            created_at=entity["created_at"],
            updated_at=entity["updated_at"],
            memory_ids=json.loads(entity.get("memory_ids") or "[]"),
            error=entity.get("error") or None,
            attempts=int(entity.get("attempts") or 0),
            epoch=str(entity.get("epoch") or ""),
        )

    def _job_rows(self, event_id: str) -> list[dict[str, Any]]:
        from shared.stores.state.tables import encode_key

        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": encode_key(event_id), "lo": "job-", "hi": "job."}
        return sorted(self._table().query_entities(query, parameters=params), key=lambda row: row["RowKey"])

    def job(self, event_id: str) -> dict[str, Any] | None:
        from shared.stores.state.tables import table_calls

        with table_calls("read event input"):
            rows = self._job_rows(event_id)
        if not rows:
            return None
        job: dict[str, Any] = json.loads("".join(row.get("text") or "" for row in rows))
        return job

    def save(self, event: IngestEvent) -> bool:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import UpdateMode

        from shared.stores.state.tables import table_calls

        with table_calls("update event"):
            try:
                # An update, not an upsert: a state row deleted with its user stays deleted.
                self._table().update_entity(self._entity(event), mode=UpdateMode.MERGE)
            except ResourceNotFoundError:
                return False
        return True

    def drop_job(self, event_id: str) -> None:
        from shared.stores.state.tables import table_calls

        with table_calls("drop event input"):
            table = self._table()
            for row in self._job_rows(event_id):
                table.delete_entity(row["PartitionKey"], row["RowKey"])

    def delete(self, event: IngestEvent) -> None:
        from shared.stores.state.tables import encode_key, table_calls

        with table_calls("delete event"):
            table = self._table()
            _delete_partition(table, encode_key(event.event_id))
            table.delete_entity(_user_partition(event.user_id), encode_key(event.event_id))  # a 404 is ignored

    def delete_user(self, user_id: str) -> int:
        """Every event of the user, input included, found through the user's index partition."""
        from shared.stores.state.tables import table_calls

        count = 0
        with table_calls("delete events"):
            table = self._table()
            index = list(
                table.query_entities(
                    "PartitionKey eq @pk",
                    parameters={"pk": _user_partition(user_id)},
                    select=["PartitionKey", "RowKey"],
                )
            )
            for entry in index:
                count += 1 if _delete_partition(table, entry["RowKey"]) else 0
                table.delete_entity(entry["PartitionKey"], entry["RowKey"])
        return count

    def close(self) -> None:
        self._tables.close()


def build_event_store(settings: Settings) -> EventStore:
    """Events in Table Storage when a queue or shared state is configured, else files under DATA_DIR."""
    if settings.resolved_event_store == "azure_table":
        return TableEventStore(settings)
    return LocalEventStore(settings.data_dir / "events")


def _user_partition(user_id: str) -> str:
    """The index partition of a user's events (`|` never occurs in an event id's partition)."""
    from shared.stores.state.tables import encode_key

    return f"user|{encode_key(user_id)}"


def _delete_partition(table: Any, partition: str) -> int:
    """Deletes every row of an event's partition; returns how many there were."""
    rows = list(
        table.query_entities("PartitionKey eq @pk", parameters={"pk": partition}, select=["PartitionKey", "RowKey"])
    )
    for row in rows:
        table.delete_entity(row["PartitionKey"], row["RowKey"])
    return len(rows)
