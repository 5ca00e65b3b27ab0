"""Stored payloads as the API's memory objects: one place that knows which payload keys are the store's.

Both the memory service (by-id reads, lists) and the search (results) build `MemoryRecord`s from
what the engine returns; the names mem0 and the store adapters own never reach a caller.
"""

from __future__ import annotations

from typing import Any

from shared.context import as_iso_utc
from shared.contract import RESERVED_METADATA_KEYS, MemoryRecord
from shared.stores.vector.port import DERIVED_KEYS, SUPERSEDED_BY, SUPERSEDES, VALID_FROM, VALID_UNTIL

# Payload keys mem0 and the store adapters own; user metadata can never overwrite them (validated
# in shared/contract.py) and they are not returned as metadata.
CORE_PAYLOAD_KEYS = RESERVED_METADATA_KEYS | DERIVED_KEYS


def record_from_payload(memory_id: str, payload: dict[str, Any], score: float | None = None) -> MemoryRecord:
    """A stored payload as the API's memory object (`score` for search results)."""
    return MemoryRecord(
        id=memory_id,
        memory=payload.get("data") or "",
        user_id=payload.get("user_id") or "",
        agent_id=payload.get("agent_id") or None,
        run_id=payload.get("run_id") or None,
        expiration_date=str(payload["expiration_date"]) if payload.get("expiration_date") else None,
        metadata={k: v for k, v in payload.items() if k not in CORE_PAYLOAD_KEYS},
        created_at=as_iso_utc(payload.get("created_at")),
        updated_at=as_iso_utc(payload.get("updated_at")),
        valid_from=as_iso_utc(payload.get(VALID_FROM) or payload.get("created_at")),
        valid_until=as_iso_utc(payload.get(VALID_UNTIL)) if payload.get(VALID_UNTIL) else None,
        superseded_by=str(payload[SUPERSEDED_BY]) if payload.get(SUPERSEDED_BY) else None,
        supersedes=[str(i) for i in payload[SUPERSEDES]] if payload.get(SUPERSEDES) else None,
        score=score,
    )
