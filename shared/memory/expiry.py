"""The hourly purge of expired memories (MemoryService.purge_expired), apart from the service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.memory.outages import vector_store_calls
from shared.stores.vector.port import expired

if TYPE_CHECKING:
    from shared.memory.ports import MemoryGraph
    from shared.stores.vector.port import VectorStore

logger = logging.getLogger(__name__)
_SCAN_PAGE = 1000


def purge_expired(
    store: VectorStore, graph: MemoryGraph | None, erase: Callable[[list[str]], None], now: float | None = None
) -> int:
    """Erases every memory (of any user) expired at `now`, with its history and its graph part.

    The store finds them with one range query on `_expires` a page at a time; nothing else is read.
    Expiry wins over validity: a superseded memory that expires is erased like any other.
    """
    moment = now if now is not None else time.time()
    purged = 0
    while True:
        with vector_store_calls():
            batch = [row for row in store.expired_points(moment, _SCAN_PAGE) if expired(row.payload, moment)]
        if not batch:
            return purged
        if graph is not None:
            for row in batch:
                owner = (row.payload or {}).get("user_id")
                if owner:
                    graph.delete_memory(str(owner), str(row.id))
        erase([row.id for row in batch])
        purged += len(batch)
        logger.info("purged %d expired memories", len(batch))
