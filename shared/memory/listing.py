"""Pages of a user's memories: the cursor a page ends with, and reading one page from the store.

A list (and an export) answers the user's memories newest first, a page at a time (at most `limit`,
default LIST_PAGE_SIZE), with `next_cursor` when older ones are left. The cursor is the place of the
page's last memory in its user's write order (shared/stores/vector/reads.py): its `_seq` as 8 bytes
and its id as the 16 bytes of the UUID, in URL-safe base64, 32 characters. The next page is what is
strictly older than that place, so memories added meanwhile (newer) never shift the pages still to
come, and following the cursors yields every memory once.

Every string of 32 URL-safe base64 characters is a cursor (shared/constraints.py's pattern says so),
which is what /openapi.json promises: a `_seq` above any real one (2**53) reads as 2**53, "older than
anything", the first page.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from shared.constraints import CURSOR_PATTERN
from shared.errors import ValidationFailed
from shared.memory.outages import vector_store_calls
from shared.stores.vector.port import Hit, Position, VectorStore, belongs, live
from shared.stores.vector.reads import position
from shared.stores.vector.records import record_from_payload

if TYPE_CHECKING:
    from shared.contract import MemoryRecord, SearchFilters
    from shared.scope import Scope

T = TypeVar("T")
MAX_SEQ = 2**53  # a cursor's `_seq` above this reads as this (every engine compares it exactly)
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass
class Page(Generic[T]):
    """One page: its items and the cursor of the next one (None: this is the last)."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(where: Position) -> str:
    """The cursor of the page after the memory at `where` ((`_seq`, id): the id is a UUID)."""
    seq, memory_id = where
    raw = min(max(seq, 0), MAX_SEQ).to_bytes(8, "big") + uuid.UUID(memory_id).bytes
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """The place a cursor names; a string that is not one is a 422 naming `cursor`."""
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise ValidationFailed(
            "cursor is not one this API gave",
            details=[{"loc": ["cursor"], "msg": "must be a next_cursor as a list answered it", "type": "cursor"}],
        )
    raw = base64.urlsafe_b64decode(cursor)
    return min(int.from_bytes(raw[:8], "big"), MAX_SEQ), str(uuid.UUID(bytes=raw[8:]))


def read_page(
    store: VectorStore, user_key: str, limit: int, cursor: str | None, filters: SearchFilters | None = None
) -> Page[Hit]:
    """Up to `limit` of the live memories of the storage key `user_key` passing `filters`, newest first,
    after `cursor`: one more is asked of the store, whose presence says whether a next page exists."""
    before = decode_cursor(cursor) if cursor else None
    with vector_store_calls():
        rows = store.page_user(user_key, limit + 1, before, filters)
    shown = rows[:limit]
    last = position(shown[-1]) if len(rows) > limit and shown else None
    # The adapters filter in the engine; an engine's filter is never the only guard of a user's data.
    mine = [row for row in shown if belongs(row.payload, user_key) and live(row.payload, filters)]
    return Page(mine, encode_cursor(last) if last is not None else None)


def memory_page(
    store: VectorStore, scope: Scope, limit: int, cursor: str | None, filters: SearchFilters | None
) -> Page[MemoryRecord]:
    """`read_page` for the scope's user, as the API's memory objects (naming the plain user)."""
    rows = read_page(store, scope.key, limit, cursor, filters)
    records = [
        record_from_payload(str(row.id), row.payload).model_copy(update={"user_id": scope.user_id})
        for row in rows.items
    ]
    return Page(records, rows.next_cursor)
