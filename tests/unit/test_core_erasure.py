"""Erasure is a barrier (shared/stores/state/erasure.py), over fakes: work of a user under way when
the user is erased (a queued event, an attempt mid-write, a chat turn) removes what it wrote and
ends `cancelled`, and nothing of the user is left in any store; work started after the erasure
runs normally. Updates racing a delete never leave the memory or a history row behind."""

from __future__ import annotations

from shared.contract import MemoryInput
from shared.errors import NotFound
from shared.memory.ingest import memory_ids_for
from tests.fixtures.fake_core import Core, build_core, fails

ITEMS = [MemoryInput(content=f"fact {i} about the canary garden") for i in range(5)]


def _nothing_of(core: Core, user: str = "alice") -> None:
    """No store holds anything of `user`: memories, history rows, logged messages, turns, events."""
    assert [p for _, p in core.store.points.values() if p.get("user_id") == user] == []
    assert core.history.rows == {} and core.history.messages.get(f"user_id={user}") is None
    assert [key for key in core.sessions.turns if key[0] == user] == []
    assert [e for e in core.events.events.values() if e.user_id == user] == [] and core.events.jobs == {}
    assert core.graph is None or [r for r in core.graph.relations.values() if r["user"] == user] == []
    assert "canary" not in repr((core.store.points, core.history.texts(), core.sessions.turns, core.events.jobs))


# --- ingestion events ------------------------------------------------------------------------------
def test_a_queued_event_of_an_erased_user_is_cancelled_on_delivery_and_writes_nothing() -> None:
    core = build_core(queued=True)
    event = core.ingestion.submit_memories("alice", ITEMS)
    core.events.events[event.event_id].attempts = 1  # even one whose earlier attempt died mid-way
    core.service.add_memories("alice", ITEMS[:1], ids=memory_ids_for(event.event_id, len(ITEMS))[:1])
    core.service.delete_user_memories("alice")
    # The erasure deleted the event already; one recreated in the race window is cancelled the same way.
    core.events.create(event, {"items": [i.model_dump(mode="json") for i in ITEMS]})
    [cancelled] = core.deliver()
    assert cancelled.status == "cancelled" and core.queue is not None and core.queue.sent == []
    _nothing_of(core)


def test_an_erasure_landing_mid_write_cancels_the_event_and_removes_its_writes() -> None:
    core = build_core(queued=True)
    event = core.ingestion.submit_memories("alice", ITEMS)
    core.store.before_insert = lambda: core.service.delete_user_memories("alice")
    [cancelled] = core.deliver()
    assert cancelled.status == "cancelled" and cancelled.event_id == event.event_id
    assert core.events.get(event.event_id) is None  # the state row was not written back
    _nothing_of(core)


def test_an_event_created_while_its_user_is_erased_comes_back_cancelled_and_is_never_queued() -> None:
    core = build_core(queued=True)
    epoch_then = core.erasure.epoch("alice")
    core.service.delete_user_memories("alice")
    event = core.ingestion.dispatch(core.ingestion.create("alice", "batch_add", {"items": []}, epoch=epoch_then))
    assert event.status == "cancelled" and core.queue is not None and core.queue.sent == []
    assert core.events.events == {}


def test_an_inline_event_racing_an_erasure_is_cancelled() -> None:
    core = build_core()
    core.store.before_insert = lambda: core.service.delete_user_memories("alice")
    event = core.ingestion.submit_memories("alice", ITEMS)
    assert event.status == "cancelled"
    _nothing_of(core)


def test_the_user_comes_back_after_the_erasure_and_everything_works() -> None:
    core = build_core(queued=True)
    core.ingestion.submit_memories("alice", ITEMS)
    core.service.delete_user_memories("alice")
    assert core.deliver()[0] is None  # erased with its user: dropped
    again = core.ingestion.submit_memories("alice", ITEMS[:2])
    reply = core.agent.chat("alice", "My cat is Miso.", "s1")
    outcomes = core.deliver()
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"] and again.epoch == core.erasure.epoch("alice")
    assert core.service.count_memories("alice") == 3 and core.sessions.recent_turns("alice", "s1", 5)
    assert core.ingestion.get_event(reply.learning.event_id, "alice").status == "succeeded"


def test_another_users_work_is_not_touched_by_an_erasure() -> None:
    core = build_core(queued=True)
    core.ingestion.submit_memories("bob", ITEMS[:2])
    core.store.before_insert = lambda: core.service.delete_user_memories("alice")
    [done] = core.deliver()
    assert done.status == "succeeded" and core.service.count_memories("bob") == 2


# --- chat turns ------------------------------------------------------------------------------------
def test_an_inline_turn_whose_user_is_erased_mid_learning_is_answered_and_leaves_nothing() -> None:
    core = build_core()
    core.store.before_insert = lambda: core.service.delete_user_memories("alice")
    reply = core.agent.chat("alice", "My canary is Kiwi. I live in Porto.", "s1")
    assert reply.response and reply.learning.status == "cancelled"
    _nothing_of(core)


def test_an_inline_turn_whose_user_is_erased_once_it_is_recorded_removes_it_again() -> None:
    core = build_core()
    core.sessions.after_append = lambda: core.service.delete_user_memories("alice")
    core.service.add_memory("alice", "kept until the erasure")
    reply = core.agent.chat("alice", "My canary is Kiwi.", "s1")
    assert reply.learning.status == "cancelled"
    _nothing_of(core)


def test_a_queued_turn_whose_user_is_erased_once_it_is_recorded_is_never_queued() -> None:
    core = build_core(queued=True)
    core.sessions.after_append = lambda: core.service.delete_user_memories("alice")
    reply = core.agent.chat("alice", "My canary is Kiwi.", "s1")
    assert reply.learning.status == "cancelled" and core.queue is not None and core.queue.sent == []
    _nothing_of(core)


def test_a_queued_learning_delivered_after_the_erasure_is_a_no_op() -> None:
    core = build_core(queued=True)
    reply = core.agent.chat("alice", "My canary is Kiwi.", "s1")
    core.store.before_insert = lambda: core.service.delete_user_memories("alice")  # erased mid-extraction
    [cancelled] = core.deliver()
    assert cancelled.status == "cancelled" and cancelled.event_id == reply.learning.event_id
    _nothing_of(core)


def test_a_turn_started_before_an_erasure_cannot_be_recorded_after_it() -> None:
    core = build_core(queued=True)
    core.llm.outage.check = lambda: core.service.delete_user_memories("alice")  # type: ignore[method-assign]
    reply = core.agent.chat("alice", "My canary is Kiwi.", "s1")  # erased while the LLM answered
    assert reply.learning.status == "cancelled" and core.queue is not None and core.queue.sent == []
    _nothing_of(core)


# --- updates racing deletes ------------------------------------------------------------------------
def test_an_update_racing_a_delete_neither_recreates_the_memory_nor_leaves_a_history_row() -> None:
    core = build_core()
    added = core.service.add_memory("alice", "I keep a canary")
    core.engine.mid_update = lambda: core.service.delete_memory(added.id, "alice")
    assert isinstance(fails(lambda: core.service.update_memory(added.id, "I keep a canary named Kiwi", None, "alice")),
                      NotFound)  # fmt: skip
    assert core.store.points == {} and core.history.rows == {}


def test_an_update_whose_row_follows_the_deletions_history_pass_is_erased_by_the_second() -> None:
    core = build_core()
    added = core.service.add_memory("alice", "I keep a canary")
    erase = core.history.erase_memories
    calls: list[list[str]] = []

    def erase_then_update(ids: list[str]) -> int:
        calls.append(ids)
        erased = erase(ids)
        if len(calls) == 1:  # between the deletion's history pass and its removal of the memory
            core.service.update_memory(added.id, "I keep a canary named Kiwi", None, "alice")
            assert [r["event"] for r in core.history.rows[added.id]] == ["UPDATE"]
        return erased

    core.history.erase_memories = erase_then_update  # type: ignore[method-assign]
    core.service.delete_user_memories("alice")
    assert core.store.points == {} and core.history.rows == {} and len(calls) == 2


def test_a_synchronous_add_erased_between_its_memory_and_its_history_leaves_no_row() -> None:
    for add in ("batch", "one"):
        core = build_core()
        write = core.history.batch_add_history

        def erase_then_write(rows: list[dict[str, object]], write=write, core=core) -> None:
            core.history.batch_add_history = write  # type: ignore[method-assign]
            core.service.delete_user_memories("alice")  # the memory is there: it is erased, then its row comes
            write(rows)

        core.history.batch_add_history = erase_then_write  # type: ignore[method-assign]
        if add == "batch":
            core.service.add_memories("alice", ITEMS)
        else:
            core.service.add_memory("alice", "I keep a canary")
        assert core.store.points == {} and core.history.rows == {}, add
