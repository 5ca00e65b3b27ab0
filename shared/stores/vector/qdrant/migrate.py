"""Brings a collection of an earlier layout (dense vector and a full-text index, no keyword vector)
into this one, in place: `python -m tools.ops.migrate_store` with QDRANT_URL set runs it.

1. adds the named sparse vector (`create_vector_name`, Qdrant 1.18+; idempotent);
2. gives every memory without one its BM25 weights (`update_vectors` of that vector alone: the
   dense vector and the payload are not rewritten), a page at a time;
3. drops the full-text index on the memory text (nothing queries it any more) and creates any
   payload index the layout has and the collection lacks;
4. marks the collection with the layout (collection metadata), which the service checks at start.

Until step 4 the service refuses the collection, so a search never runs over half-migrated
memories. A re-run does only what is left (memories without the vector), so an interrupted run is
finished by running it again. Stop the workers of the earlier version first: a memory they write
afterwards has no keyword vector (a re-run adds it) and a text they rewrite keeps its old one.
"""

from __future__ import annotations

import logging
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from shared.stores.vector.port import TEXT_KEY
from shared.stores.vector.qdrant.keywords import SPARSE_KEY, document_vector, sparse_params
from shared.stores.vector.qdrant.schema import (
    LAYOUT,
    LAYOUT_KEY,
    check_vectors,
    ensure_indexes,
    is_local,
)

logger = logging.getLogger(__name__)

PAGE = 256


def upgrade_collection(client: QdrantClient, name: str, dims: int) -> int:
    """Migrates collection `name` in place; returns how many memories got their keyword vector."""
    info = client.get_collection(name)
    check_vectors(name, info, dims)
    if SPARSE_KEY not in (info.config.params.sparse_vectors or {}):
        client.create_vector_name(
            name,
            SPARSE_KEY,
            models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=sparse_params().modifier)),
            wait=True,
        )
    written = 0
    lacking = models.Filter(must_not=[models.HasVectorCondition(has_vector=SPARSE_KEY)])
    offset: Any = None
    while True:
        records, offset = client.scroll(
            name, scroll_filter=lacking, limit=PAGE, offset=offset, with_payload=[TEXT_KEY], with_vectors=False
        )
        updates = []
        for record in records:
            vector = document_vector((record.payload or {}).get(TEXT_KEY))
            if vector is not None:  # a memory without indexed words keeps no keyword vector
                updates.append(models.PointVectors(id=record.id, vector={SPARSE_KEY: vector}))
        written += _update(client, name, updates)
        if offset is None:
            break
    info = client.get_collection(name)
    if TEXT_KEY in (info.payload_schema or {}):
        client.delete_payload_index(name, TEXT_KEY, wait=True)
    ensure_indexes(client, is_local(client), name, client.get_collection(name))
    client.update_collection(name, metadata={LAYOUT_KEY: LAYOUT})
    logger.info("collection '%s': %d memories got their keyword vector; layout %s", name, written, LAYOUT)
    return written


def _update(client: QdrantClient, name: str, updates: list[models.PointVectors]) -> int:
    """Writes the vectors; a memory deleted since it was read is skipped."""
    if not updates:
        return 0
    try:
        client.update_vectors(name, points=updates, wait=True)
        return len(updates)
    except (UnexpectedResponse, ValueError, KeyError):
        # Someone deleted one of them meanwhile (a server says 404, local mode raises): write the ones left.
        alive = {str(r.id) for r in client.retrieve(name, ids=[u.id for u in updates], with_payload=False)}
        left = [u for u in updates if str(u.id) in alive]
        if left:
            client.update_vectors(name, points=left, wait=True)
        return len(left)
