"""`Ingestion` (shared/memory/ingest.py) over fakes: an event is all or nothing, a redelivery or a
redo never writes a second copy, and the last failed attempt leaves the event `failed` (the
message then waits in the poison queue, and a replay redoes it)."""

from __future__ import annotations

import pytest

from shared.contract import MemoryInput
from shared.errors import BackendUnavailable, NotFound
from shared.memory.ingest import memory_ids_for
from shared.scope import Scope
from tests.fixtures.fake_core import Core, build_core, fails

ITEMS = [MemoryInput(content="I play the cello"), MemoryInput(content="I live in Porto")]


@pytest.fixture
def queued() -> Core:
    return build_core(queued=True)


def test_inline_adds_run_before_the_response_with_ids_derived_from_the_event() -> None:
    core = build_core()
    event = core.ingestion.submit_memories("alice", ITEMS)
    assert event.status == "succeeded" and event.memory_ids == memory_ids_for(event.event_id, 2)
    assert set(event.memory_ids) == set(core.store.points)
    assert core.events.job(event.event_id) is None  # the memories hold the text now, not the event


def test_a_queued_add_waits_then_runs_once_even_when_delivered_twice(queued: Core) -> None:
    event = queued.ingestion.submit_memories("alice", ITEMS)
    assert event.status == "queued" and queued.store.points == {} and len(queued.queue.sent) == 1  # type: ignore[union-attr]
    queued.queue.sent.append(dict(queued.queue.sent[0]))  # type: ignore[union-attr]  # at-least-once delivery
    first, second = queued.deliver()
    assert first.status == second.status == "succeeded"
    assert queued.service.count_memories("alice") == 2 and len(queued.history.rows) == 2


def test_a_redo_after_an_unfinished_attempt_purges_first_and_writes_the_same_memories(queued: Core) -> None:
    event = queued.ingestion.submit_memories("alice", ITEMS)
    # A worker died mid-attempt: the attempt was counted and one memory (with its id) was written.
    stored = queued.events.get(event.event_id)
    assert stored is not None
    stored.attempts, stored.status = 1, "processing"
    queued.events.save(stored)
    queued.service.add_memories("alice", ITEMS[:1], ids=memory_ids_for(event.event_id, 2)[:1])
    [done] = queued.deliver()
    assert done.status == "succeeded" and done.attempts == 2
    assert sorted(queued.store.points) == sorted(memory_ids_for(event.event_id, 2))
    assert all(len(queued.history.get_history(i)) == 1 for i in done.memory_ids)  # no second ADD row


def test_a_failed_attempt_leaves_nothing_and_the_event_queued_for_the_retry(queued: Core) -> None:
    event = queued.ingestion.submit_memories("alice", ITEMS)
    queued.history.outage.down = True
    [error] = queued.deliver(last_attempt=False)
    assert isinstance(error, BackendUnavailable)
    failed = queued.events.get(event.event_id)
    assert failed is not None and failed.status == "queued" and failed.error and "state_store" in failed.error
    assert queued.store.points == {}
    queued.history.outage.down = False
    [done] = queued.deliver()
    assert done.status == "succeeded" and queued.service.count_memories("alice") == 2


def test_the_last_failed_attempt_fails_the_event_and_a_replay_from_the_poison_queue_redoes_it(queued: Core) -> None:
    event = queued.ingestion.submit_memories("alice", ITEMS)
    queued.store.outage.down = True
    [error] = queued.deliver(last_attempt=True)
    assert isinstance(error, BackendUnavailable)
    failed = queued.ingestion.get_event(event.event_id, "alice")
    assert failed.status == "failed" and failed.error and failed.error == "unavailable: the vector_store is down (fake)"
    assert queued.events.job(event.event_id) is not None  # kept for a replay
    queued.store.outage.down = False
    [done] = queued.deliver()  # an operator moved the message back from the poison queue
    assert done.status == "succeeded" and queued.service.count_memories("alice") == 2


def test_an_unexpected_error_is_reported_to_the_client_without_its_text(
    queued: Core, caplog: pytest.LogCaptureFixture
) -> None:
    event = queued.ingestion.submit_memories("alice", ITEMS)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("connect to db-internal-7.corp.example:5432 failed (/srv/secret/path)")

    queued.store.insert = broken  # type: ignore[method-assign]
    [error] = queued.deliver(last_attempt=True)
    assert isinstance(error, OSError)
    failed = queued.ingestion.get_event(event.event_id, "alice")
    assert failed.status == "failed" and failed.error and failed.error.startswith("internal_error:")
    assert "db-internal" not in failed.error and "/srv" not in failed.error
    assert "db-internal-7.corp.example" in caplog.text  # the operator's log keeps it


def test_a_message_for_an_unknown_or_someone_elses_event_is_dropped(queued: Core) -> None:
    event = queued.ingestion.submit_memories("alice", ITEMS)
    assert queued.ingestion.process("00000000-0000-4000-8000-000000000000", last_attempt=False) is None
    assert queued.ingestion.process(event.event_id, last_attempt=False, user_id="mallory") is None
    assert queued.store.points == {}


def test_an_event_is_only_its_users(queued: Core) -> None:
    event = queued.ingestion.submit_memories(Scope("alice", tenant="acme"), ITEMS)
    assert queued.ingestion.get_event(event.event_id, Scope("alice", tenant="acme")).event_id == event.event_id
    assert queued.ingestion.get_event(event.event_id, Scope(None, tenant="acme")).event_id == event.event_id
    for scope in (
        Scope("bob", tenant="acme"),
        Scope("alice", tenant="globex"),
        Scope("alice"),
        Scope(None, tenant="globex"),
    ):
        assert isinstance(fails(lambda scope=scope: queued.ingestion.get_event(event.event_id, scope)), NotFound)
    assert isinstance(fails(lambda: queued.ingestion.get_event("not-an-id", Scope("alice", tenant="acme"))), NotFound)


def test_a_queue_outage_fails_the_event_and_says_so(queued: Core) -> None:
    assert queued.queue is not None
    queued.queue.outage.down = True
    assert isinstance(fails(lambda: queued.ingestion.submit_memories("alice", ITEMS)), BackendUnavailable)
    [event] = queued.events.events.values()
    assert event.status == "failed" and queued.store.points == {}


def test_deleting_the_user_drops_their_waiting_events(queued: Core) -> None:
    event = queued.ingestion.submit_memories("alice", ITEMS)
    queued.service.delete_user_memories("alice")
    assert queued.deliver() == [None] and queued.store.points == {}
    assert queued.events.get(event.event_id) is None
