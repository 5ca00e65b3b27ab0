"""The ingestion event stores on their real backends: the local files and Table Storage (Azurite).
Deleting a user erases that user's events (inputs included) through the user's index, and no one else's;
an event deleted with its user is never written back; the erasure epochs (erasure.py) on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.stores.state.erasure import ErasureLedger, LocalErasureLedger, TableErasureLedger
from shared.stores.state.events import EventStore, IngestEvent, LocalEventStore, TableEventStore
from shared.stores.state.sessions import Turn
from tools.harness.azurite import AzuriteServer


@pytest.fixture(params=["local", "azure_table"])
def events(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "local":
        yield LocalEventStore(tmp_path / "events")
        return
    azurite: AzuriteServer = request.getfixturevalue("azurite")
    settings = Settings(
        data_dir=tmp_path,
        state_store="azure_table",
        azure_tables_connection_string=azurite.connection_string,
        events_table=f"events{uuid.uuid4().hex[:8]}",
    )
    store = TableEventStore(settings)
    yield store
    store.close()


def _event(user: str) -> IngestEvent:
    now = "2026-12-01T00:00:00.000Z"
    return IngestEvent(str(uuid.uuid4()), user, "batch_add", "queued", now, now)


def test_deleting_a_user_erases_exactly_that_users_events(events: EventStore) -> None:
    # The same user id in another tenant is another storage key (shared/scope.py): "3:t-2:ann".
    users = ("ann", "3:t-2:ann", "bo/b#?")  # the last holds characters Table keys may not
    made = {user: [_event(user) for _ in range(3)] for user in users}
    long_text = "x" * 70_000  # an input over two Table rows
    for user, listed in made.items():
        for event in listed:
            events.create(event, {"items": [{"content": f"{user} canary {long_text}"}]})
    assert events.delete_user("ann") == 3
    for event in made["ann"]:
        assert events.get(event.event_id) is None and events.job(event.event_id) is None
    for user in users[1:]:
        for event in made[user]:
            assert events.get(event.event_id) == event
            job = events.job(event.event_id)
            assert job is not None and job["items"][0]["content"].startswith(f"{user} canary")
    assert events.delete_user("ann") == 0  # a retry finds nothing left
    assert events.delete_user("bo/b#?") == 3
    assert all(events.get(event.event_id) is None for event in made["bo/b#?"])


def test_an_event_deleted_with_its_user_is_never_written_back(events: EventStore) -> None:
    event, kept = _event("ann"), _event("ann")
    for made in (event, kept):
        events.create(made, {"items": [{"content": "canary"}]})
    event.status = "processing"
    assert events.save(event) is True and events.get(event.event_id) == event
    events.delete_user("ann")
    event.status = "succeeded"
    assert events.save(event) is False  # a worker still holding it: no state row without an index
    assert events.get(event.event_id) is None
    assert events.delete_user("ann") == 0


def test_one_event_is_deleted_with_its_input_and_its_index_entry(events: EventStore) -> None:
    event, other = _event("ann"), _event("ann")
    for made in (event, other):
        events.create(made, {"items": [{"content": "y" * 40_000}]})
    events.delete(event)
    assert events.get(event.event_id) is None and events.job(event.event_id) is None
    events.delete(event)  # twice (a racing erasure): harmless
    assert events.delete_user("ann") == 1 and events.get(other.event_id) is None


@pytest.fixture(params=["local", "azure_table"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ErasureLedger]:
    if request.param == "local":
        yield LocalErasureLedger(tmp_path / "erased")
        return
    azurite: AzuriteServer = request.getfixturevalue("azurite")
    settings = Settings(
        data_dir=tmp_path,
        state_store="azure_table",
        azure_tables_connection_string=azurite.connection_string,
        events_table=f"events{uuid.uuid4().hex[:8]}",
    )
    store = TableErasureLedger(settings)
    yield store
    store.close()


def test_each_erasure_moves_only_its_users_epoch(ledger: ErasureLedger) -> None:
    users = ("ann", "3:t-2:ann", "bo/b#?")
    assert [ledger.epoch(user) for user in users] == ["", "", ""]
    first = ledger.advance("ann")
    assert ledger.epoch("ann") == first != "" and ledger.epoch("3:t-2:ann") == ""
    second = ledger.advance("ann")
    assert ledger.epoch("ann") == second != first
    ledger.advance("bo/b#?")
    assert ledger.epoch("bo/b#?") not in ("", second)


def test_the_marker_does_not_name_the_user(tmp_path: Path) -> None:
    ledger = LocalErasureLedger(tmp_path / "erased")
    ledger.advance("ann.secret@example.com")
    [marker] = (tmp_path / "erased").iterdir()
    assert "ann" not in marker.name and b"ann" not in marker.read_bytes()


@pytest.mark.parametrize("backend", ["local", "azure_table"])
def test_a_turn_is_removed_again_and_only_that_turn(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """What a chat turn that lost the race to an erasure undoes (shared/chat/agent.py)."""
    from shared.factory import build_session_store

    values: dict[str, object] = {"data_dir": tmp_path, "state_store": backend}
    if backend == "azure_table":
        azurite: AzuriteServer = request.getfixturevalue("azurite")
        values.update(
            azure_tables_connection_string=azurite.connection_string, sessions_table=f"s{uuid.uuid4().hex[:8]}"
        )
    sessions = build_session_store(Settings(**values))  # type: ignore[arg-type]
    turns = [Turn(f"said {i}", "noted", f"2026-12-01T00:00:0{i}.000Z", []) for i in range(3)]
    for turn in turns:
        sessions.append_turn("ann", "s1", turn)
    sessions.append_turn("3:t-2:ann", "s1", turns[1])
    assert sessions.remove_turn("ann", "s1", turns[1]) == 1
    assert sessions.recent_turns("ann", "s1", 10) == [turns[0], turns[2]]
    assert sessions.recent_turns("3:t-2:ann", "s1", 10) == [turns[1]]
    assert sessions.remove_turn("ann", "s1", turns[1]) == 0
    for turn in (turns[0], turns[2]):
        sessions.remove_turn("ann", "s1", turn)
    assert sessions.export_user("ann") == {}
