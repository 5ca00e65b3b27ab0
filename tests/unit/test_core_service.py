"""`MemoryService`'s rules over in-memory fakes of every collaborator (tests/fixtures/fake_*.py):
adds, search, updates, by-id and whole-user deletion (erased from every store), expiry, tenancy and
ownership. The same rules through the real stores and HTTP are in tests/integration and tests/e2e."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.contract import MemoryInput
from shared.errors import BackendUnavailable, Forbidden, NotFound
from shared.scope import TENANT_KEY, Scope
from shared.stores.state.events import IngestEvent
from shared.stores.state.sessions import Turn
from tests.fixtures.fake_core import Core, build_core, fails


@pytest.fixture
def core() -> Core:
    return build_core()


def _everything(core: Core) -> str:
    """Every text any store of the core holds, for "is this word still anywhere" checks."""
    return repr(
        (
            core.store.points,
            core.history.texts(),
            core.sessions.turns,
            core.events.jobs,
            core.graph and core.graph.relations,
        )
    )


# --- adds ------------------------------------------------------------------------------------------
def test_an_add_goes_through_mem0_as_given_and_is_read_back(core: Core) -> None:
    added = core.service.add_memory("alice", "I like green tea", {"category": "drinks"}, agent_id="barista")
    assert (added.memory, added.user_id, added.agent_id, added.metadata) == (
        "I like green tea",
        "alice",
        "barista",
        {"category": "drinks"},
    )
    stored = core.store.points[added.id][1]
    assert stored["data"] == "I like green tea" and stored["user_id"] == "alice" and TENANT_KEY not in stored
    assert [row["event"] for row in core.history.get_history(added.id)] == ["ADD"]
    assert core.service.get_memory(added.id, "alice").memory == "I like green tea"


def test_an_expiry_is_stored_as_given(core: Core) -> None:
    day = core.service.add_memory("alice", "a", expiration_date=date(2999, 1, 2))
    instant = core.service.add_memory("alice", "b", expiration_date=datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert day.expiration_date == "2999-01-02" and instant.expiration_date == "2999-01-02T03:04:05Z"
    assert core.store.points[day.id][1]["expiration_date"] == "2999-01-02"


def test_a_batch_is_one_embedding_call_one_write_and_one_history_write(core: Core) -> None:
    items = [MemoryInput(content="I play the cello"), MemoryInput(content="I live in Porto", metadata={"k": "v"})]
    ids = core.service.add_memories(
        "alice", items, ids=["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]
    )
    assert ids == ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]
    assert core.embedder.calls == 2 and not core.engine.loaded  # embedded here, no mem0 involved
    assert [core.history.get_history(i)[0]["new_memory"] for i in ids] == ["I play the cello", "I live in Porto"]
    assert {m.memory for m in core.service.list_memories("alice")} == {"I play the cello", "I live in Porto"}


def test_a_batch_whose_history_write_fails_leaves_nothing_behind(core: Core) -> None:
    core.history.outage.down = True
    with pytest.raises(BackendUnavailable):
        core.service.add_memories("alice", [MemoryInput(content="one"), MemoryInput(content="two")])
    assert core.store.points == {} and core.service.count_memories("alice") == 0


# --- search ------------------------------------------------------------------------------------
def test_search_finds_the_users_own_memories_best_first(core: Core) -> None:
    core.service.add_memories(
        "alice", [MemoryInput(content=t) for t in ("I like green tea", "My cat is Miso", "I live in Porto")]
    )
    core.service.add_memory("bob", "Bob also likes green tea")
    found = core.service.search_memories("alice", "green tea", 2)
    assert found[0].memory == "I like green tea" and {r.user_id for r in found} == {"alice"}
    assert all(r.score is not None and 0 <= r.score <= 1 for r in found)
    assert "Bob also likes green tea" not in {r.memory for r in core.service.search_memories("alice", "Bob", 10)}


def test_search_within_an_agent_scope(core: Core) -> None:
    core.service.add_memory("alice", "tea with the planner", agent_id="planner")
    core.service.add_memory("alice", "tea with the coder", agent_id="coder")
    assert [r.memory for r in core.service.search_memories("alice", "tea", 10, agent_id="coder")] == [
        "tea with the coder"
    ]


def test_search_with_relations_adds_the_graph_and_says_when_it_is_down(core: Core) -> None:
    [memory_id] = core.service.learn_from_turn("alice", "I adopted Miso", "nice", {"turn_id": "t1"}, write_id="w1")
    assert core.graph is not None
    answer = core.service.search_with_relations("alice", "Miso", 5)
    assert [r["memory_ids"] for r in answer.relations or []] == [[memory_id]] and answer.warnings is None
    core.graph.down = True
    answer = core.service.search_with_relations("alice", "Miso", 5)
    assert (
        answer.results
        and answer.relations == []
        and answer.warnings
        and answer.warnings[0]["code"] == "graph_unavailable"
    )


# --- updates -------------------------------------------------------------------------------------
def test_an_update_rewrites_the_text_merges_metadata_and_keeps_history(core: Core) -> None:
    added = core.service.add_memory("alice", "I like green tea", {"category": "drinks"})
    updated = core.service.update_memory(added.id, "I like black tea", {"mood": "bold"}, "alice")
    assert updated.memory == "I like black tea" and updated.metadata == {"category": "drinks", "mood": "bold"}
    assert [(r["event"], r["new_memory"]) for r in core.service.memory_history(added.id, "alice")] == [
        ("ADD", "I like green tea"),
        ("UPDATE", "I like black tea"),
    ]
    assert core.service.search_memories("alice", "black tea", 1)[0].id == added.id


def test_an_update_of_another_users_memory_is_refused_and_changes_nothing(core: Core) -> None:
    added = core.service.add_memory("alice", "I like green tea")
    assert isinstance(fails(lambda: core.service.update_memory(added.id, "hacked", None, "mallory")), Forbidden)
    assert core.store.points[added.id][1]["data"] == "I like green tea" and len(core.history.get_history(added.id)) == 1


def test_an_update_that_loses_a_race_with_a_delete_is_not_found(core: Core) -> None:
    added = core.service.add_memory("alice", "I like green tea")
    core.service._owned = lambda *_: added  # type: ignore[method-assign]  # the check passed, then...
    core.store.delete(added.id)  # ...another request deleted it
    assert isinstance(fails(lambda: core.service.update_memory(added.id, "x", None, "alice")), NotFound)


# --- by-id reads and deletes: ownership and tenancy -------------------------------------------------
def test_a_by_id_delete_of_another_users_memory_is_refused_and_deletes_nothing(core: Core) -> None:
    added = core.service.add_memory("alice", "I like green tea")
    assert isinstance(fails(lambda: core.service.delete_memory(added.id, "mallory")), Forbidden)
    assert added.id in core.store.points and core.history.get_history(added.id)
    assert core.service.get_memory(added.id, "alice").memory == "I like green tea"


def test_another_tenants_memory_is_not_found_for_reads_updates_and_deletes(core: Core) -> None:
    ours, theirs = Scope("alice", tenant="acme"), Scope("alice", tenant="globex")
    added = core.service.add_memory(ours, "acme's secret")
    assert core.store.points[added.id][1][TENANT_KEY] == "acme" and core.store.points[added.id][1]["user_id"] != "alice"
    for call in (
        lambda: core.service.get_memory(added.id, theirs),
        lambda: core.service.delete_memory(added.id, theirs),
        lambda: core.service.update_memory(added.id, "x", None, theirs),
        lambda: core.service.memory_history(added.id, theirs),
        lambda: core.service.get_memory(added.id, Scope(None, tenant="globex")),  # tenant-wide by-id call
    ):
        assert isinstance(fails(call), NotFound)
    assert added.id in core.store.points
    # The same user id in the two tenants is two users.
    core.service.add_memory(theirs, "globex's note")
    assert [m.memory for m in core.service.list_memories(ours)] == ["acme's secret"]
    assert [m.memory for m in core.service.search_memories(theirs, "secret note", 10)] == ["globex's note"]
    assert core.service.get_memory(added.id, Scope(None, tenant="acme")).user_id == "alice"


def test_missing_malformed_and_expired_ids_are_not_found(core: Core) -> None:
    gone = core.service.add_memory("alice", "old code", expiration_date=date.today() - timedelta(days=2))
    for memory_id in ("not-a-uuid", "00000000-0000-4000-8000-000000000000", gone.id):
        assert isinstance(fails(lambda memory_id=memory_id: core.service.get_memory(memory_id, "alice")), NotFound)
    assert core.service.list_memories("alice") == [] and core.service.search_memories("alice", "old code", 5) == []


def test_a_by_id_delete_erases_history_and_graph_support(core: Core) -> None:
    [memory_id] = core.service.learn_from_turn("alice", "I adopted Miso", "nice", {"turn_id": "t1"}, write_id="w1")
    core.service.update_memory(memory_id, "I adopted a cat named Miso", None, "alice")
    assert core.service.delete_memory(memory_id, "alice") == memory_id
    assert memory_id not in core.store.points and core.history.get_history(memory_id) == []
    assert core.graph is not None and core.graph.relations == {}


def test_a_by_id_delete_with_the_graph_down_deletes_nothing(core: Core) -> None:
    added = core.service.add_memory("alice", "I like green tea")
    assert core.graph is not None
    core.graph.down = True
    assert isinstance(fails(lambda: core.service.delete_memory(added.id, "alice")), BackendUnavailable)
    assert added.id in core.store.points and core.history.get_history(added.id)


# --- deleting a user -----------------------------------------------------------------------------
def _user_with_words_everywhere(core: Core, user: str, word: str) -> None:
    [memory_id] = core.service.add_memories(user, [MemoryInput(content=f"first {word}")])
    core.service.update_memory(memory_id, f"second {word}", None, user)
    core.service.learn_from_turn(user, f"I said {word}", "ok", {"turn_id": f"t-{user}"}, write_id=f"w-{user}")
    # What mem0's extraction logged before learning was ours (learning.py): still erased with the user.
    core.history.save_messages([{"role": "user", "content": f"I said {word}"}], f"user_id={user}")
    core.sessions.append_turn(user, "s1", Turn(f"I said {word}", "ok", "2026-01-01T00:00:00.000Z", []))
    event = IngestEvent("e-" + user, user, "batch_add", "queued", "now", "now")
    core.events.create(event, {"items": [{"content": f"queued {word}"}]})


def test_deleting_a_user_erases_their_words_from_every_store(core: Core) -> None:
    _user_with_words_everywhere(core, "alice", "canary")
    _user_with_words_everywhere(core, "bob", "sparrow")
    assert "canary" in _everything(core)

    assert core.service.delete_user_memories("alice") == 2
    assert "canary" not in _everything(core)
    assert core.service.count_memories("alice") == 0 and core.service.export_sessions("alice") == {}
    assert core.events.get("e-alice") is None
    assert core.history.messages.get("user_id=alice") is None
    # nothing of anybody else's was touched
    assert core.service.count_memories("bob") == 2 and core.history.messages["user_id=bob"]
    assert core.sessions.export_user("bob") and core.events.get("e-bob") is not None
    assert core.graph is not None and {r["user"] for r in core.graph.relations.values()} == {"bob"}
    assert core.service.delete_user_memories("alice") == 0  # a retry is harmless


def test_deleting_a_users_scope_keeps_the_rest_of_the_user(core: Core) -> None:
    core.service.add_memory("alice", "planner tea", agent_id="planner")
    kept = core.service.add_memory("alice", "general tea")
    core.sessions.append_turn("alice", "s1", Turn("hi", "ok", "2026-01-01T00:00:00.000Z", []))
    assert core.service.delete_user_memories("alice", agent_id="planner") == 1
    assert [m.id for m in core.service.list_memories("alice")] == [kept.id] and core.sessions.turns


def test_deleting_a_user_with_the_graph_down_deletes_nothing(core: Core) -> None:
    _user_with_words_everywhere(core, "alice", "canary")
    before = _everything(core)
    assert core.graph is not None
    core.graph.down = True
    assert isinstance(fails(lambda: core.service.delete_user_memories("alice")), BackendUnavailable)
    assert _everything(core) == before


def test_a_purge_erases_expired_memories_of_every_user_with_their_history(core: Core) -> None:
    gone = core.service.add_memory("alice", "old code", expiration_date=date.today() - timedelta(days=2))
    other = core.service.add_memory("bob", "old pin", expiration_date=datetime.now(UTC) - timedelta(minutes=1))
    kept = core.service.add_memory("alice", "new code", expiration_date=date.today() + timedelta(days=2))
    assert core.service.purge_expired() == 2
    assert set(core.store.points) == {kept.id}
    assert core.history.get_history(gone.id) == [] == core.history.get_history(other.id)


# --- counts and exports ---------------------------------------------------------------------------
def test_stats_count_and_export(core: Core) -> None:
    core.service.add_memory("alice", "a", {"category": "food"})
    core.service.add_memory("alice", "b")
    stats = core.service.stats("alice")
    assert stats.total_memories == 2 == core.service.count_memories("alice")
    assert stats.category_distribution == {"food": 1, "other": 1}
    exported = core.service.export_memories("alice")
    assert [item["memory"] for item in exported.items] == ["b", "a"] and exported.next_cursor is None
    assert all(item["history"] for item in exported.items)


def test_close_releases_the_store_and_the_history(core: Core) -> None:
    core.service.close()
    assert core.store.closed and core.history.closed
