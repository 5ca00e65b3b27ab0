"""Builds the parts whose kind the settings choose (the first room of the composition root).

Kept apart from the modules it chooses between, so that none of them imports another to build it
(the session stores used to: `sessions` built `table_state`, which imports `sessions`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.stores.state.sessions import SessionStore


def build_session_store(settings: Settings) -> SessionStore:
    """Chat sessions in Azure Table Storage when configured, else local files under DATA_DIR."""
    if settings.resolved_state_store == "azure_table":
        from shared.stores.state.tables import TableSessionStore

        return TableSessionStore(settings)
    from shared.stores.state.sessions import LocalSessionStore

    return LocalSessionStore(settings.data_dir / "sessions")
