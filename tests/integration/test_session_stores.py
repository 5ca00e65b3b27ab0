"""The chat session stores on their real backends: the local files and Table Storage (Azurite).
A session's turns are its own: another session whose id starts with this one's never shows in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.stores.state.sessions import LocalSessionStore, SessionStore, Turn
from shared.stores.state.tables import TableSessionStore
from tools.harness.azurite import AzuriteServer


@pytest.fixture(params=["local", "azure_table"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    if request.param == "local":
        yield LocalSessionStore(tmp_path / "sessions")
        return
    azurite: AzuriteServer = request.getfixturevalue("azurite")
    settings = Settings(
        data_dir=tmp_path,
        state_store="azure_table",
        azure_tables_connection_string=azurite.connection_string,
        sessions_table=f"sessions{uuid.uuid4().hex[:8]}",
    )
    store = TableSessionStore(settings)
    yield store
    store.close()


def _turn(text: str) -> Turn:
    return Turn(user_message=text, assistant_message=f"re: {text}", timestamp="2026-12-01T00:00:00Z", memories_used=[])


@pytest.mark.parametrize("other", ["s|x", "s|", "s||", "s}"])
def test_a_session_shows_only_its_own_turns(sessions: SessionStore, other: str) -> None:
    sessions.append_turn("ann", "s", _turn("mine 1"))
    sessions.append_turn("ann", other, _turn("theirs"))
    sessions.append_turn("ann", "s", _turn("mine 2"))
    assert [t.user_message for t in sessions.recent_turns("ann", "s", 10)] == ["mine 1", "mine 2"]
    assert [t.user_message for t in sessions.recent_turns("ann", other, 10)] == ["theirs"]
    assert [t.user_message for t in sessions.recent_turns("ann", "s", 1)] == ["mine 2"]  # the newest
    assert sessions.export_user("ann") == {
        "s": [_turn("mine 1"), _turn("mine 2")],
        other: [_turn("theirs")],
    }
