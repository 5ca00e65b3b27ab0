"""Durable state shared by every worker, in Azure Table Storage: chat sessions and memory history.

Keys are designed for the reads we make:
- sessions: PartitionKey = user, RowKey = session + reversed time, so "the last N turns of a
  session" is one range query that returns newest first, and another user's session is simply
  another partition.
- history: PartitionKey = memory id, RowKey = time, so a memory's history is one partition read.
Authentication is a connection string (Azurite, keys) or the endpoint with managed identity.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from shared.context import utc_now
from shared.errors import BackendUnavailable
from shared.lazy import Lazy
from shared.observability.tracing import dependency_span
from shared.settings import Settings
from shared.stores.state.sessions import Turn

logger = logging.getLogger(__name__)

_FORBIDDEN_KEY_CHARS = {"/", "\\", "#", "?", "%"}
_REVERSE_BASE = 10**20
# Table Storage caps a string property at 64 KiB (32K UTF-16 units); longer turns are cut, marked.
_MAX_TEXT = 30_000


def _fit(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 20] + " …[truncated]"


def encode_key(value: str) -> str:
    """Table keys may not hold / \\ # ? or control characters; percent-encode those (and %)."""
    out = []
    for ch in value:
        if ch in _FORBIDDEN_KEY_CHARS or ord(ch) < 32 or 127 <= ord(ch) <= 159:
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


@contextmanager
def table_calls(what: str) -> Iterator[None]:
    """A storage outage is a 503, not a 500; each call is a dependency span."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    try:
        with dependency_span(f"table storage {what}", {"db.system": "azure_table", "db.operation": what}):
            yield
    except (ServiceRequestError, ServiceResponseError) as error:
        logger.warning("table storage unreachable during %s: %s", what, error)
        raise BackendUnavailable("state_store", "the session/history store is unavailable; retry later") from error
    except HttpResponseError as error:
        if error.status_code is not None and (error.status_code >= 500 or error.status_code in (408, 429)):
            logger.warning("table storage failed during %s: %s", what, error)
            raise BackendUnavailable("state_store", "the session/history store is unavailable; retry later") from error
        raise


class _Tables:
    """One TableServiceClient per worker and the tables it has already made sure exist."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: Lazy[Any] = Lazy(self._build)
        self._ready: set[str] = set()

    def _build(self) -> Any:
        from azure.data.tables import TableServiceClient

        target = self.settings.table_connection or ""
        options: dict[str, Any] = {"retry_total": 2, "connection_timeout": 5, "read_timeout": 15}
        if target.startswith(("http://", "https://")):
            from shared.credentials import azure_credential

            return TableServiceClient(endpoint=target, credential=azure_credential(self.settings), **options)
        return TableServiceClient.from_connection_string(target, **options)

    def table(self, name: str) -> Any:
        service = self._service.get()
        if name not in self._ready:
            with table_calls("create table"):
                service.create_table_if_not_exists(name)
            self._ready.add(name)
        return service.get_table_client(name)

    def close(self) -> None:
        service = self._service.reset()
        if service is not None:
            service.close()


def _reverse_time_key() -> str:
    return f"{_REVERSE_BASE - time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _time_key(stamp: str | None) -> str:
    return f"{stamp or utc_now().isoformat()}|{uuid.uuid4().hex[:8]}"


class TableSessionStore:
    def __init__(self, settings: Settings) -> None:
        self._tables = _Tables(settings)
        self._name = settings.sessions_table

    def recent_turns(self, user_id: str, session_id: str, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        partition = encode_key(user_id)
        prefix = encode_key(session_id) + "|"
        # The row-key range holds the session's turns, and those of any session whose id starts with
        # this one's and a "|" ("s" and "s|x"): the stored session id tells them apart, on the server.
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and session_id eq @sid"
        params = {"pk": partition, "lo": prefix, "hi": prefix[:-1] + "}", "sid": session_id}
        turns: list[Turn] = []
        with table_calls("read session"):
            table = self._tables.table(self._name)
            for entity in table.query_entities(query, parameters=params, results_per_page=limit):
                turns.append(
                    Turn(
                        user_message=entity["user_message"],
                        assistant_message=entity["assistant_message"],
                        timestamp=entity["timestamp"],
                        memories_used=json.loads(entity.get("memories_used") or "[]"),
                    )
                )
                if len(turns) >= limit:
                    break
        turns.reverse()  # rows come newest first
        return turns

    def append_turn(self, user_id: str, session_id: str, turn: Turn) -> None:
        entity = {
            "PartitionKey": encode_key(user_id),
            "RowKey": f"{encode_key(session_id)}|{_reverse_time_key()}",
            "session_id": session_id,
            "user_message": _fit(turn.user_message),
            "assistant_message": _fit(turn.assistant_message),
            "timestamp": turn.timestamp,
            "memories_used": json.dumps(turn.memories_used),
        }
        with table_calls("write session"):
            self._tables.table(self._name).create_entity(entity)

    def remove_turn(self, user_id: str, session_id: str, turn: Turn) -> int:
        prefix = encode_key(session_id) + "|"
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and timestamp eq @at"
        params = {"pk": encode_key(user_id), "lo": prefix, "hi": prefix[:-1] + "}", "at": turn.timestamp}
        removed = 0
        with table_calls("remove session turn"):
            table = self._tables.table(self._name)
            for entity in list(table.query_entities(query, parameters=params)):
                if entity["user_message"] == _fit(turn.user_message):
                    table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                    removed += 1
        return removed

    def delete_user(self, user_id: str) -> int:
        count = 0
        with table_calls("delete sessions"):
            table = self._tables.table(self._name)
            rows = table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": encode_key(user_id)}, select=["PartitionKey", "RowKey"]
            )
            for row in rows:
                table.delete_entity(row["PartitionKey"], row["RowKey"])
                count += 1
        return count

    def export_user(self, user_id: str) -> dict[str, list[Turn]]:
        sessions: dict[str, list[Turn]] = {}
        with table_calls("export sessions"):
            table = self._tables.table(self._name)
            for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": encode_key(user_id)}):
                sessions.setdefault(entity["session_id"], []).append(
                    Turn(
                        user_message=entity["user_message"],
                        assistant_message=entity["assistant_message"],
                        timestamp=entity["timestamp"],
                        memories_used=json.loads(entity.get("memories_used") or "[]"),
                    )
                )
        for turns in sessions.values():
            turns.reverse()  # rows come newest first
        return sessions

    def close(self) -> None:
        self._tables.close()


class TableHistoryStore:
    """The history store (`HistoryStore`, shared/stores/state/history.py) on Table Storage."""

    def __init__(self, settings: Settings) -> None:
        self._tables = _Tables(settings)
        self._name = settings.history_table

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
        self.batch_add_history(
            [
                {
                    "memory_id": memory_id,
                    "old_memory": old_memory,
                    "new_memory": new_memory,
                    "event": event,
                    "created_at": created_at,
                    "updated_at": updated_at,
                    "is_deleted": is_deleted,
                    "actor_id": actor_id,
                    "role": role,
                }
            ]
        )

    def batch_add_history(self, records: list[dict[str, Any]]) -> None:
        entities = []
        for record in records:
            entity = {
                "PartitionKey": encode_key(str(record["memory_id"])),
                "RowKey": _time_key(record.get("updated_at") or record.get("created_at")),
                "memory_id": str(record["memory_id"]),
                "event": record.get("event") or "",
                "is_deleted": bool(record.get("is_deleted", 0)),
            }
            for key in ("old_memory", "new_memory", "created_at", "updated_at", "actor_id", "role"):
                if record.get(key) is not None:
                    entity[key] = _fit(str(record[key]))
            entities.append(entity)
        with table_calls("write history"):
            table = self._tables.table(self._name)
            if len(entities) == 1:
                table.create_entity(entities[0])
                return
            # Each memory is its own partition, so no single transaction can hold them; write them
            # in parallel and let the caller undo the batch if any write failed.
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(table.create_entity, entities))

    def get_history(self, memory_id: str) -> list[dict[str, Any]]:
        with table_calls("read history"):
            return self._partition_rows(self._tables.table(self._name), memory_id)

    def get_histories(self, memory_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each memory's rows: one partition read per memory, eight at a time (an OR of partition keys
        would make the service scan the table)."""
        with table_calls("read history"):
            table = self._tables.table(self._name)
            with ThreadPoolExecutor(max_workers=8) as pool:
                found = dict(
                    zip(memory_ids, pool.map(lambda m: self._partition_rows(table, m), memory_ids), strict=True)
                )
        return {memory_id: rows for memory_id, rows in found.items() if rows}

    @staticmethod
    def _partition_rows(table: Any, memory_id: str) -> list[dict[str, Any]]:
        return [
            {
                "id": entity["RowKey"],
                "memory_id": entity["memory_id"],
                "old_memory": entity.get("old_memory"),
                "new_memory": entity.get("new_memory"),
                "event": entity["event"],
                "created_at": entity.get("created_at"),
                "updated_at": entity.get("updated_at"),
                "is_deleted": bool(entity.get("is_deleted")),
                "actor_id": entity.get("actor_id"),
                "role": entity.get("role"),
            }
            for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": encode_key(memory_id)})
        ]

    # mem0 keeps the last messages of a scope to give its extraction prompt some context.
    def save_messages(self, messages: list[dict[str, Any]], session_scope: str) -> None:
        with table_calls("write messages"):
            table = self._tables.table(self._name)
            for message in messages:
                table.create_entity(
                    {
                        "PartitionKey": "messages|" + encode_key(session_scope),
                        "RowKey": _reverse_time_key(),
                        "role": str(message.get("role", "")),
                        "content": _fit(str(message.get("content", ""))),
                        "name": str(message.get("name") or ""),
                    }
                )

    def get_last_messages(self, session_scope: str, limit: int = 10) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        with table_calls("read messages"):
            table = self._tables.table(self._name)
            rows = table.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": "messages|" + encode_key(session_scope)},
                results_per_page=limit,
            )
            for row in rows:
                found.append({"role": row["role"], "content": row["content"], "name": row.get("name") or None})
                if len(found) >= limit:
                    break
        found.reverse()
        return found

    def erase_memories(self, memory_ids: list[str]) -> int:
        """Deletes every history row of these memories (a memory's rows are its partition)."""
        return sum(self._erase_partition(encode_key(str(memory_id)), "erase history") for memory_id in memory_ids)

    def erase_messages(self, scope_part: str) -> int:
        """Deletes the messages mem0 logged for a user: the service's scope is the user's part alone."""
        return self._erase_partition("messages|" + encode_key(scope_part), "erase messages")

    def _erase_partition(self, partition: str, what: str) -> int:
        with table_calls(what):
            table = self._tables.table(self._name)
            keys = [
                (entity["PartitionKey"], entity["RowKey"])
                for entity in table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": partition}, select=["PartitionKey", "RowKey"]
                )
            ]
            for partition_key, row_key in keys:
                table.delete_entity(partition_key, row_key)
        return len(keys)

    def reset(self) -> None:
        raise NotImplementedError("dropping the shared history table is an operator task, not an API call")

    def close(self) -> None:
        self._tables.close()
