"""The payloads a batch add writes (MemoryService.add_memories), built apart from the service."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from shared.context import expiration_text
from shared.contract import MemoryInput
from shared.scope import Scope
from shared.stores.vector.port import EXPIRATION_KEY


def batch_payloads(
    scope: Scope, items: Sequence[MemoryInput], now: str, agent_id: str | None, run_id: str | None
) -> list[dict[str, Any]]:
    """One payload per item, as mem0's own add would write it: one instant for the whole batch (the
    store numbers the memories in this order)."""
    payloads = []
    for item in items:
        payload: dict[str, Any] = dict(item.metadata or {})
        payload.update(scope.payload_fields())
        payload.update(
            {
                "user_id": scope.key,
                "role": "user",
                "data": item.content,
                "hash": hashlib.md5(item.content.encode()).hexdigest(),
                "created_at": now,
                "updated_at": now,
            }
        )
        payload.update({k: v for k, v in (("agent_id", agent_id), ("run_id", run_id)) if v})
        expires = expiration_text(item.expiration_date)
        if expires is not None:
            payload[EXPIRATION_KEY] = expires
        payloads.append(payload)
    return payloads
