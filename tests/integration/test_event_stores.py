"""The ingestion event stores on their real backends: the local files and Table Storage (Azurite).
Deleting a user erases that user's events (inputs included) through the user's index, and no one else's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.stores.state.events import EventStore, IngestEvent, LocalEventStore, TableEventStore
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
