"""Operator tasks of the Chroma layout: refusing the old layout, moving it, re-analysing documents."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from chromadb.errors import NotFoundError

from shared.errors import ConfigurationProblem
from shared.stores.vector.chroma.keywords import analysed
from shared.stores.vector.chroma.queries import PAGE, result_rows
from shared.stores.vector.port import (
    ENDED_KEY,
    EXPIRES_KEY,
    MORTAL_KEY,
    TENANT_KEY,
    TEXT_KEY,
    USER_KEY,
    VALID_UNTIL_KEY,
    Hit,
    belongs,
    derive,
    timestamp,
)


class ChromaLayout(Protocol):
    """What these tasks use of `ChromaVectorStore` (a protocol, so this module does not import store.py,
    which imports it)."""

    client: Any
    collection_name: str
    catalog: Any

    def user_collections(self) -> list[Any]: ...

    def owners(self, ids: Sequence[str]) -> dict[str, str]: ...

    def reserve(self, memories: Mapping[str, Sequence[str]]) -> dict[str, int]: ...

    def write(self, user_id: str, ids: list[str], vectors: list[Any], payloads: list[dict[str, Any]]) -> None: ...


def check_embedding_model(store: ChromaLayout, model: str | None) -> None:
    """The catalog records the embedding model of the memories; another model on them is refused (None:
    no check, for tools that copy vectors as stored)."""
    if model is None:
        return
    metadata = dict(store.catalog.metadata or {})
    found = metadata.get("embedding_model")
    if found == model:
        return
    if isinstance(found, str) and store.catalog.count():
        raise ConfigurationProblem(
            f"Chroma collections '{store.collection_name}__*' hold memories embedded with {found}, but the "
            f"configured embedder is {model}: vectors of two models cannot be compared. Use another "
            "COLLECTION_NAME for this embedder (and add the memories again), or configure the previous model"
        )
    store.catalog.modify(metadata={**metadata, "embedding_model": model})


def refuse_legacy(store: ChromaLayout) -> None:
    """mem0's own Chroma adapter kept everything in one collection named `collection_name`.

    Those memories are not in this layout: serving without them would look like data loss, so
    the store refuses to start and names the command that moves them.
    """
    from shared.stores.vector import MIGRATE_COMMAND

    try:
        legacy = store.client.get_collection(name=store.collection_name, embedding_function=None)
    except NotFoundError:
        return
    count = legacy.count()
    if count:
        raise ConfigurationProblem(
            f"Chroma collection '{store.collection_name}' holds {count} memories in the layout of earlier "
            f"versions (one collection for all users): run `{MIGRATE_COMMAND}` once to move them into this "
            "version's layout (the old collection is left as it was), or use another COLLECTION_NAME"
        )


def reanalyse(store: ChromaLayout) -> int:
    """Rewrites every document whose analysed form is not what `analysed` makes of its text
    today (after a change to `shared.query.text.tokenize`). A full scan, for an operator to run
    once; returns how many documents changed."""
    changed = 0
    for collection in store.user_collections():
        offset = 0
        while True:
            got = collection.get(limit=PAGE, offset=offset, include=["metadatas", "documents", "embeddings"])
            rows = result_rows(got, "metadatas", "documents", "embeddings")
            offset += len(rows)
            stale = [
                (memory_id, analysed(str((metadata or {}).get(TEXT_KEY) or "")), embedding)
                for memory_id, metadata, document, embedding in rows
                if analysed(str((metadata or {}).get(TEXT_KEY) or "")) != document and embedding is not None
            ]
            if stale:
                # with a vector each: Chroma would embed a new document itself otherwise
                collection.update(
                    ids=[memory_id for memory_id, _, _ in stale],
                    embeddings=[[float(x) for x in embedding] for _, _, embedding in stale],
                    documents=[document for _, document, _ in stale],
                )
                changed += len(stale)
            if len(rows) < PAGE:
                break
    return changed


def migrate(store: ChromaLayout, source: str | None = None) -> int:
    """Moves memories of the old single-collection layout (mem0's own Chroma adapter, collection
    `source`, default `collection_name`) into this layout, numbering each user's in creation
    order after the user's last `_seq`. Memories already in the catalog are skipped, so it can be
    re-run; the source collection is left as it was (delete it once satisfied). A full scan, for an
    operator to run once. Returns how many memories were moved."""
    legacy = store.client.get_collection(name=source or store.collection_name, embedding_function=None)
    moved = 0
    offset = 0
    while True:
        got = legacy.get(limit=PAGE, offset=offset, include=["metadatas", "embeddings"])
        rows = result_rows(got, "metadatas", "embeddings")
        offset += len(rows)
        known = store.owners([memory_id for memory_id, _, _ in rows])
        fresh = [
            (memory_id, dict(metadata or {}), embedding)
            for memory_id, metadata, embedding in rows
            if memory_id not in known and isinstance((metadata or {}).get(USER_KEY), str) and embedding is not None
        ]
        by_user: dict[str, list[tuple[str, dict[str, Any], Any]]] = {}
        for row in fresh:
            by_user.setdefault(row[1][USER_KEY], []).append(row)
        for user_rows in by_user.values():
            user_rows.sort(key=lambda row: (timestamp(row[1].get("created_at")) or 0.0, row[0]))
        if by_user:
            first = store.reserve({u: [row[0] for row in user_rows] for u, user_rows in by_user.items()})
            for user, user_rows in by_user.items():
                payloads = [derive(row[1], first[user] + n) for n, row in enumerate(user_rows)]
                store.write(user, [row[0] for row in user_rows], [row[2] for row in user_rows], payloads)
                moved += len(user_rows)
        if len(rows) < PAGE:
            return moved


# --- reads of the port that are not searches (kept here: store.py is at its size) --------------
def pages(collection: Any, user_id: str, where: dict[str, Any] | None, limit: int | None) -> list[Hit]:
    """The user's memories passing `where`, a page of `PAGE` per engine call, in storage order."""
    hits: list[Hit] = []
    offset = 0
    while limit is None or len(hits) < limit:
        page = PAGE if limit is None else min(PAGE, limit - len(hits))
        got = collection.get(where=where, limit=page, offset=offset, include=["metadatas"])
        rows = result_rows(got, "metadatas")
        hits.extend(Hit(id=m, payload=dict(p or {})) for m, p in rows if belongs(p, user_id))
        if len(rows) < page:
            break
        offset += len(rows)
    return hits


def _expired_where(now: float) -> dict[str, Any]:
    return {"$and": [{MORTAL_KEY: {"$eq": True}}, {EXPIRES_KEY: {"$lte": now}}]}


def count_expired(collection: Any, now: float | None = None) -> int:
    got = collection.get(where=_expired_where(now if now is not None else time.time()), include=[])
    return len(got.get("ids") or [])


def _ended_where(now: float) -> list[dict[str, Any]]:
    """No longer valid (issue 22) but not expired: counted apart from the expired ones."""
    unexpired = {"$or": [{MORTAL_KEY: {"$ne": True}}, {EXPIRES_KEY: {"$gt": now}}]}
    return [{ENDED_KEY: {"$eq": True}}, {VALID_UNTIL_KEY: {"$lte": now}}, unexpired]


def count_live(collection: Any, tenant: str | None, now: float | None = None) -> int:
    """A user collection's memories that have not expired and are valid now. For a tenant's key, only
    the tenant's: its collection may also hold memories a tenant-less user wrote under the same key
    before keys told the two apart (shared/scope.py), which Chroma's plain count would include."""
    moment = now if now is not None else time.time()

    def count(where: dict[str, Any]) -> int:
        return len(collection.get(where=where, include=[]).get("ids") or [])

    ended = _ended_where(moment)
    if tenant is None:
        return int(collection.count()) - count_expired(collection, moment) - count({"$and": ended})
    mine = {TENANT_KEY: {"$eq": tenant}}
    expired = {"$and": [mine, *_expired_where(moment)["$and"]]}
    return count(mine) - count(expired) - count({"$and": [mine, *ended]})


def expired_points(store: ChromaLayout, now: float, limit: int) -> list[Hit]:
    found: list[Hit] = []
    for collection in store.user_collections():
        if len(found) >= limit:
            break
        got = collection.get(where=_expired_where(now), limit=limit - len(found), include=["metadatas"])
        found.extend(Hit(id=m, payload=dict(p or {})) for m, p in result_rows(got, "metadatas"))
    return found
