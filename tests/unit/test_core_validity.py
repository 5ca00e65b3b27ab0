"""A memory's validity (issue 22) over the in-memory fakes: explicit supersession on add and batch-add,
`MemoryService.supersede`/`invalidate` (idempotent, history rows), reads valid now by default, `as_of`
and `include_superseded`, expiry winning, erasure of whole chains. The same through the engines is in
tests/integration/test_store_contract.py, through HTTP in tests/e2e/test_api_validity.py."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.contract import MemoryInput
from shared.errors import NotFound, ValidationFailed
from shared.query.filters import Validity
from shared.scope import Scope
from tests.fixtures.fake_core import Core, build_core


@pytest.fixture
def core() -> Core:
    return build_core(graph=False)


def _ids(records: list) -> set[str]:  # type: ignore[type-arg]
    return {record.id for record in records}


def test_an_add_that_supersedes_hides_the_old_memory_from_every_read(core: Core) -> None:
    service = core.service
    paris = service.add_memory("alice", "I live in Paris")
    berlin = service.add_memory("alice", "I live in Berlin", supersedes=[paris.id])
    assert berlin.supersedes == [paris.id]
    assert _ids(service.search_memories("alice", "where do I live", 10)) == {berlin.id}
    assert _ids(service.list_memories("alice")) == {berlin.id}
    assert service.stats("alice").total_memories == 1 == service.count_memories("alice")
    old = service.get_memory(paris.id, "alice")  # by id it is still there, with its successor
    assert old.superseded_by == berlin.id and old.valid_until is not None
    new = service.get_memory(berlin.id, "alice")
    assert new.supersedes == [paris.id] and new.valid_from == new.created_at
    both = service.search_memories("alice", "where do I live", 10, validity=Validity.everything())
    assert _ids(both) == {paris.id, berlin.id}
    listed = service.list_page("alice", validity=Validity.everything()).items
    assert {r.id: r.superseded_by for r in listed} == {paris.id: berlin.id, berlin.id: None}
    assert [r["event"] for r in core.history.get_history(paris.id)] == ["ADD", "SUPERSEDED"]
    assert [r["event"] for r in core.history.get_history(berlin.id)] == ["ADD", "SUPERSEDES"]


def test_as_of_returns_what_was_true_then(core: Core) -> None:
    service = core.service
    first = service.add_memory("alice", "I work at the bakery")
    second = service.add_memory("alice", "I work at the library")
    service.supersede("alice", [first.id], second.id, at="2030-01-01T00:00:00Z")
    # both were written now; the first stays true until 2030
    in_2029 = Validity.as_of(datetime(2029, 6, 1, tzinfo=UTC).timestamp())
    assert _ids(service.list_page("alice", validity=in_2029).items) == {first.id, second.id}
    in_2031 = Validity.as_of(datetime(2031, 1, 1, tzinfo=UTC).timestamp())
    assert _ids(service.list_page("alice", validity=in_2031).items) == {second.id}
    before_all = Validity.as_of(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
    assert service.search_memories("alice", "work", 10, validity=before_all) == []
    # until 2030 the first one is still true now
    assert _ids(service.list_memories("alice")) == {first.id, second.id}


def test_supersede_and_invalidate_are_idempotent(core: Core) -> None:
    service = core.service
    a = service.add_memory("alice", "I have a dog")
    b = service.add_memory("alice", "I have two dogs")
    service.supersede("alice", [a.id], b.id)
    service.supersede("alice", [a.id], b.id)
    assert [r["event"] for r in core.history.get_history(a.id)] == ["ADD", "SUPERSEDED"]
    assert [r["new_memory"] for r in core.history.get_history(a.id)][-1] == b.id
    assert core.store.points[b.id][1]["supersedes"] == [a.id]
    c = service.add_memory("alice", "I have a cat")
    service.invalidate("alice", [c.id])
    service.invalidate("alice", [c.id])
    assert [r["event"] for r in core.history.get_history(c.id)] == ["ADD", "INVALIDATED"]
    assert service.get_memory(c.id, "alice").superseded_by is None
    assert _ids(service.list_memories("alice")) == {b.id}
    with pytest.raises(ValidationFailed):
        service.add_memory("alice", "I have three dogs", supersedes=[a.id])  # no longer current


def test_unknown_or_foreign_supersedes_is_404_and_nothing_is_written(core: Core) -> None:
    service = core.service
    bobs = service.add_memory("bob", "I live in Oslo")
    theirs = service.add_memory(Scope("alice", tenant="acme"), "I live in Lyon")
    before = dict(core.store.points)
    for ids in ([bobs.id], [theirs.id], ["8a1f7f52-2b8e-4d4e-9a51-0d8f3c0e6a11"]):
        with pytest.raises(NotFound):
            service.add_memory("alice", "I live in Rome", supersedes=ids)
        with pytest.raises(NotFound):
            service.add_memories("alice", [MemoryInput(content="ok"), MemoryInput(content="x", supersedes=ids)])
    assert core.store.points == before
    assert core.store.points[bobs.id][1].get("superseded_by") is None


def test_a_batch_item_supersedes_and_a_redone_batch_changes_nothing(core: Core) -> None:
    service = core.service
    old = service.add_memory("alice", "My favourite colour is blue")
    items = [MemoryInput(content="My favourite colour is green", supersedes=[old.id]), MemoryInput(content="x")]
    ids = service.add_memories("alice", items)
    assert core.store.points[old.id][1]["superseded_by"] == ids[0]
    again = service.add_memories("alice", items, ids=ids)  # an ingestion event's redo: the same ids
    assert again == ids
    assert [r["event"] for r in core.history.get_history(old.id)] == ["ADD", "SUPERSEDED"]
    with pytest.raises(ValidationFailed):  # one memory superseded by two items
        service.add_memories(
            "alice", [MemoryInput(content="a", supersedes=[ids[1]]), MemoryInput(content="b", supersedes=[ids[1]])]
        )


def test_expiry_wins_and_erasure_takes_whole_chains(core: Core) -> None:
    service = core.service
    mortal = service.add_memory("alice", "I am in Rome this week", expiration_date=date(2000, 1, 1))
    with pytest.raises(NotFound):  # expired: gone whatever its validity
        service.add_memory("alice", "I am home", supersedes=[mortal.id])
    assert mortal.id not in _ids(service.list_page("alice", validity=Validity.everything()).items)
    a = service.add_memory("alice", "I live in Paris")
    b = service.add_memory("alice", "I live in Berlin", supersedes=[a.id])
    c = service.add_memory("alice", "I live in Madrid", supersedes=[b.id])
    assert _ids(service.list_memories("alice")) == {c.id}
    assert service.delete_user_memories("alice") >= 3
    assert not any(p.get("user_id") == "alice" for _, p in core.store.points.values())
    assert all(core.history.get_history(m) == [] for m in (a.id, b.id, c.id))


def test_an_export_holds_every_memory_of_a_chain(core: Core) -> None:
    service = core.service
    a = service.add_memory("alice", "I live in Paris")
    b = service.add_memory("alice", "I live in Berlin", supersedes=[a.id])
    exported = {m["id"]: m for m in service.export_memories("alice").items}
    assert set(exported) == {a.id, b.id} and exported[a.id]["superseded_by"] == b.id


def test_a_purge_of_a_successor_makes_what_it_superseded_current_again(core: Core) -> None:
    """A failed event's purge erases what it wrote; a supersession it had begun (even halfway: the
    store failing after the first old memory ended) is undone, so no fact disappears with it."""
    service = core.service
    paris = service.add_memory("alice", "I live in Paris")
    rome = service.add_memory("alice", "I stay in Rome in summer", allow_duplicates=True)
    (berlin,) = service.add_memories("alice", [MemoryInput(content="I live in Berlin")])
    real_update, calls = core.store.update, []

    def failing_update(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 3:  # the successor's link, the first old memory, then the store drops
            raise RuntimeError("the store dropped mid-write (fake)")
        real_update(*args, **kwargs)  # type: ignore[arg-type]

    core.store.update = failing_update  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        service.supersede("alice", [paris.id, rome.id], berlin)
    core.store.update = real_update  # type: ignore[method-assign]
    assert _ids(service.list_memories("alice")) == {rome.id, berlin}  # Paris ended, Rome not yet

    service.erase_memories([berlin])  # the event's purge
    assert _ids(service.list_memories("alice")) == {paris.id, rome.id}
    reopened = service.get_memory(paris.id, "alice")
    assert reopened.valid_until is None and reopened.superseded_by is None
    # The store failed before the history rows of the supersession: only the reopening is recorded.
    assert [r["event"] for r in core.history.get_history(paris.id)] == ["ADD", "REOPENED"]
    assert core.history.get_history(berlin) == []
    assert service.get_memory(rome.id, "alice").valid_until is None  # never ended: untouched
