"""A memory's validity (issue 22): superseding old memories by a new one, invalidating memories.

Nothing is overwritten: a superseded memory keeps its text and gets `valid_until` (when it stopped
being true) and `superseded_by` (its successor's id); the successor gets `supersedes` (the ids it
replaced) and `valid_from` (when it became true: its `created_at` unless given). An invalidated
memory gets `valid_until` alone. The engines derive `_valid_until`/`_ended` from `valid_until`
(shared/stores/vector/port.py), and every read leaves out what is not valid now unless asked
(`shared.query.filters.Validity`).

The writes are payload-only updates through the store port, which never recreate a memory deleted
meanwhile (each adapter's `update`); the history rows of a memory found gone afterwards are erased
again, as an add settles its own. Each call is idempotent: what is already so is not written again
and gets no second history row.

History rows (the texts stay in the rows of their own memory, so erasing a memory erases them):
- `SUPERSEDED` on an old memory: `old_memory` its text, `new_memory` the successor's id;
- `SUPERSEDES` on the successor: `old_memory` the superseded ids (comma-separated), `new_memory` its text;
- `INVALIDATED`: `old_memory` the memory's text, `new_memory` null.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.context import iso_utc
from shared.errors import NotFound, ValidationFailed
from shared.memory.outages import vector_store_calls
from shared.stores.vector.port import (
    SUPERSEDED_BY,
    SUPERSEDES,
    TEXT_KEY,
    VALID_FROM,
    VALID_UNTIL,
    belongs,
    expired,
    timestamp,
)

if TYPE_CHECKING:
    from shared.scope import Scope
    from shared.stores.state.history import HistoryRow, HistoryStore
    from shared.stores.vector.port import VectorStore


def instant(at: str | None, field: str = "at") -> str:
    """`at` (RFC 3339) in the API's UTC form, or now; anything else is a 422 naming `field`."""
    if at is None:
        return iso_utc()
    moment = timestamp(at)
    if moment is None:
        raise ValidationFailed(
            f"{field} is not an RFC 3339 date-time",
            details=[{"loc": [field], "msg": "must be an RFC 3339 date-time", "type": "datetime"}],
        )
    return iso_utc(datetime.fromtimestamp(moment, tz=UTC))


def is_current(payload: dict[str, Any]) -> bool:
    """Neither superseded nor invalidated (whatever the instant: a `valid_until` ends it)."""
    return not payload.get(VALID_UNTIL) and not payload.get(SUPERSEDED_BY)


def owned_payloads(store: VectorStore, scope: Scope, ids: Sequence[str], field: str) -> dict[str, dict[str, Any]]:
    """The payloads of `ids`, each the scope's user's and unexpired; an unknown, foreign (another user's
    or tenant's: no existence oracle) or expired one is a 404 naming it, before anything is written."""
    with vector_store_calls():
        found = store.fetch(list(dict.fromkeys(ids)))
    for memory_id in ids:
        payload = found.get(memory_id)
        if payload is None or not belongs(payload, scope.key) or expired(payload):
            raise NotFound(
                f"memory {memory_id!r} not found",
                details=[{"loc": [field], "msg": f"unknown memory {memory_id}", "type": "not_found"}],
            )
    return found


def check_supersedes(
    store: VectorStore, scope: Scope, lists: Sequence[tuple[Sequence[str] | None, str | None]]
) -> None:
    """What an add (or each item of a batch: (its `supersedes`, its id when known)) says it supersedes:
    the scope's own current memories (or already superseded by that very item: a redone event), each
    named by one item at most. 404 for an unknown or foreign id, 422 for one no longer current."""
    named = [(memory_id, new_id) for ids, new_id in lists for memory_id in dict.fromkeys(ids or ())]
    if not named:
        return
    payloads = owned_payloads(store, scope, [memory_id for memory_id, _ in named], "supersedes")
    seen: set[str] = set()
    for memory_id, new_id in named:
        if memory_id in seen:
            raise ValidationFailed(
                f"memory {memory_id!r} is superseded twice in one request",
                details=[{"loc": ["supersedes"], "msg": "an id at most once", "type": "duplicate"}],
            )
        seen.add(memory_id)
        payload = payloads[memory_id]
        if not is_current(payload) and (new_id is None or payload.get(SUPERSEDED_BY) != new_id):
            raise ValidationFailed(
                f"memory {memory_id!r} is no longer current",
                details=[{"loc": ["supersedes"], "msg": f"{memory_id} is superseded or invalidated", "type": "ended"}],
            )


def supersede(
    store: VectorStore, history: HistoryStore, scope: Scope, old_ids: Sequence[str], new_id: str, at: str | None
) -> None:
    """`MemoryService.supersede`: each old memory ends at `at` (or now), replaced by `new_id`."""
    old_ids = list(dict.fromkeys(old_ids))
    if not old_ids:
        return
    if new_id in old_ids:
        raise ValidationFailed("a memory cannot supersede itself", details=[{"loc": ["supersedes"], "type": "self"}])
    payloads = owned_payloads(store, scope, [*old_ids, new_id], "supersedes")
    for memory_id in old_ids:
        payload = payloads[memory_id]
        if not is_current(payload) and payload.get(SUPERSEDED_BY) != new_id:
            raise ValidationFailed(
                f"memory {memory_id!r} is no longer current",
                details=[{"loc": ["supersedes"], "msg": f"{memory_id} is superseded or invalidated", "type": "ended"}],
            )
    moment = instant(at)
    new = payloads[new_id]
    writes: list[tuple[str, dict[str, Any]]] = []
    rows: list[HistoryRow] = []
    for memory_id in old_ids:
        payload = payloads[memory_id]
        if payload.get(SUPERSEDED_BY) == new_id:
            continue  # already done: idempotent
        writes.append((memory_id, {**payload, VALID_UNTIL: moment, SUPERSEDED_BY: new_id}))
        rows.append(_row(memory_id, "SUPERSEDED", payload.get(TEXT_KEY), new_id, moment))
    had = [str(i) for i in new.get(SUPERSEDES) or []]
    added = [memory_id for memory_id in old_ids if memory_id not in had]
    if added:
        changed = {**new, SUPERSEDES: [*had, *added]}
        if at is not None or not new.get(VALID_FROM):
            changed[VALID_FROM] = moment if at is not None else (new.get("created_at") or moment)
        # The successor names what it supersedes before any of them ends: a failure in between leaves
        # links `reopen` can follow back when the successor is removed.
        writes.insert(0, (new_id, changed))
        rows.insert(0, _row(new_id, "SUPERSEDES", ",".join(added), new.get(TEXT_KEY), moment))
    _write(store, history, writes, rows)


def reopen(store: VectorStore, history: HistoryStore, successor_ids: Sequence[str]) -> int:
    """Before successors are erased (a failed learning event's purge): the memories they ended are
    current again (`valid_until` and `superseded_by` removed, history row `REOPENED`), so removing
    what a failed event wrote never hides a fact it had begun to replace. Returns how many."""
    if not successor_ids:
        return 0
    with vector_store_calls():
        successors = store.fetch(list(successor_ids))
    owner = {new: str(payload.get("user_id") or "") for new, payload in successors.items()}
    ended_by = {str(old): new for new, payload in successors.items() for old in payload.get(SUPERSEDES) or []}
    if not ended_by:
        return 0
    with vector_store_calls():
        olds = store.fetch(list(ended_by))
    moment = iso_utc()
    writes: list[tuple[str, dict[str, Any]]] = []
    rows: list[HistoryRow] = []
    for memory_id, payload in olds.items():
        new = ended_by[memory_id]
        if belongs(payload, owner[new]) and payload.get(SUPERSEDED_BY) == new:  # the successor's own user's
            writes.append((memory_id, {k: v for k, v in payload.items() if k not in (VALID_UNTIL, SUPERSEDED_BY)}))
            rows.append(_row(memory_id, "REOPENED", new, payload.get(TEXT_KEY), moment))
    _write(store, history, writes, rows)
    return len(writes)


def invalidate(store: VectorStore, history: HistoryStore, scope: Scope, ids: Sequence[str], at: str | None) -> None:
    """`MemoryService.invalidate`: each memory ends at `at` (or now), with no successor."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return
    payloads = owned_payloads(store, scope, ids, "ids")
    moment = instant(at)
    writes: list[tuple[str, dict[str, Any]]] = []
    rows: list[HistoryRow] = []
    for memory_id in ids:
        payload = payloads[memory_id]
        if not is_current(payload):
            continue  # already ended (invalidated or superseded): idempotent
        writes.append((memory_id, {**payload, VALID_UNTIL: moment}))
        rows.append(_row(memory_id, "INVALIDATED", payload.get(TEXT_KEY), None, moment))
    _write(store, history, writes, rows)


def _row(memory_id: str, event: str, old: Any, new: Any, moment: str) -> HistoryRow:
    return {
        "memory_id": memory_id,
        "old_memory": old,
        "new_memory": new,
        "event": event,
        "created_at": moment,
        "updated_at": iso_utc(),
        "role": "user",
    }


def _write(
    store: VectorStore, history: HistoryStore, writes: list[tuple[str, dict[str, Any]]], rows: list[HistoryRow]
) -> None:
    """The payload updates (conditional: a memory deleted meanwhile stays deleted), then their history
    rows, then the rows of any memory found gone erased again (its deletion may have passed already)."""
    if not writes:
        return
    with vector_store_calls():
        for memory_id, payload in writes:
            store.update(vector_id=memory_id, payload=payload)
    history.batch_add_history(rows)
    with vector_store_calls():
        present = store.fetch([memory_id for memory_id, _ in writes])
    if gone := [memory_id for memory_id, _ in writes if memory_id not in present]:
        history.erase_memories(gone)
