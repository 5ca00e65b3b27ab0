"""The hourly purge of expired memories (MemoryService.purge_expired), apart from the service."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from shared.memory.outages import vector_store_calls
from shared.stores.vector.port import expired

if TYPE_CHECKING:
    from shared.memory.service import MemoryService

logger = logging.getLogger(__name__)
_SCAN_PAGE = 1000


def purge_expired(service: MemoryService, now: float | None = None) -> int:
    """Erases every memory (of any user) expired at `now`, with its history and its graph part.

    The store finds them with one range query on `_expires` a page at a time; nothing else is read.
    Expiry wins over validity: a superseded memory that expires is erased like any other.
    """
    moment = now if now is not None else time.time()
    purged = 0
    while True:
        with vector_store_calls():
            batch = [row for row in service.store.expired_points(moment, _SCAN_PAGE) if expired(row.payload, moment)]
        if not batch:
            return purged
        if service.graph is not None:
            for row in batch:
                owner = (row.payload or {}).get("user_id")
                if owner:
                    service.graph.delete_memory(str(owner), str(row.id))
        service._erase([row.id for row in batch])
        purged += len(batch)
        logger.info("purged %d expired memories", len(batch))
