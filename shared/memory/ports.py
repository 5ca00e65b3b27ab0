"""What the memory service needs of its graph memory (`shared.graph.GraphStore` on Neo4j is the one
implementation; tests/fixtures has an in-memory one). The other collaborators' ports live beside
their implementations: `VectorStore` (shared/stores/vector/port.py), `HistoryStore`, `SessionStore`
and `EventStore` (shared/stores/state/), `MemoryEngine` (shared/memory/mem0_engine.py) and
`Embedder` (shared/ai/embeddings.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.graph.store import GraphReadResult, GraphWriteResult


class MemoryGraph(Protocol):
    """A user's entities and relations, each relation citing the memories that support it. Every
    call takes the user's storage key; `self_name` names the user's own node."""

    def search_safe(
        self,
        user_id: str,
        query: str,
        limit: int = 10,
        *,
        vector: Sequence[float] | None = None,
        self_name: str | None = None,
    ) -> GraphReadResult:
        """Relations relevant to `query`; an outage is a warning in the result, never an error."""
        ...

    def user_graph(self, user_id: str, *, include_history: bool = False, limit: int = 10_000) -> dict[str, Any]: ...

    def extract_and_store(
        self,
        user_id: str,
        text: str,
        memory_ids: Sequence[str] = (),
        *,
        write_id: str | None = None,
        self_name: str | None = None,
    ) -> GraphWriteResult:
        """The LLM extracts entities and relations from `text`; they are merged in as one write."""
        ...

    def revert_write(self, user_id: str, result: GraphWriteResult) -> None: ...

    def delete_memory(self, user_id: str, memory_id: str) -> int: ...

    def delete_user(self, user_id: str, batch: int = 2_000) -> int: ...

    def health(self) -> dict[str, Any]: ...
