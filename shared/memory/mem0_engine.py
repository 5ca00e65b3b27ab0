"""mem0 behind one door: the only module of the service that imports mem0.

The service keeps mem0 for one thing: the update of a memory's text (re-embedded, one history row);
every add, one memory or a batch, is the service's own batch path (one embedding serves the
duplicate check and the write). Learning from a turn is the service's own
(shared/memory/learning.py: our extraction and reconciliation prompts); mem0's additive extraction,
which only ever added, is no longer used. `MemoryEngine` is exactly that; everything else (adds, reads,
search, deletion and erasure) the service does on the vector store port and the
history store itself. mem0's own delete is not offered: it writes one more history row holding the
text it deletes.

`build_memory` is the one place that knows how mem0 is assembled. mem0's `Memory.__init__` builds
an embedder, an LLM client, a vector store and a SQLite history from provider names; ours are
given, so the builder allocates the object and sets the attributes mem0 reads, from our parts.
`Mem0Engine` imports and assembles mem0 on its first call: importing it costs about a second on a
new worker (`python -m tools.bench.coldstart`: "build mem0"), which a worker's first search never
waits for. tests/integration/test_mem0_engine.py checks the assembly against mem0's own
constructor, so an upgrade of mem0 that adds a part fails a test instead of a request.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from shared.lazy import Lazy

if TYPE_CHECKING:
    from shared.ai.embeddings import Embedder
    from shared.settings import Settings
    from shared.stores.state.history import HistoryStore
    from shared.stores.vector.port import VectorStore


class MemoryEngine(Protocol):
    """What the memory service asks of mem0. Every write also lands in the history store."""

    def update(self, memory_id: str, text: str, metadata: dict[str, Any] | None) -> None:
        """New text (re-embedded) and `metadata` merged into the memory's own."""
        ...

    def load(self) -> None:
        """Gets ready now rather than on the first write (a warm-up; the cold-start benchmark times it)."""
        ...


class ExtractionLlm(Protocol):
    """mem0's LLM interface, as it calls it (shared/ai/llm.py's `ChatModel` implements it)."""

    def generate_response(self, messages: list[dict[str, str]], response_format: Any = None, **kwargs: Any) -> str: ...


def prepare_mem0_environment(settings: Settings) -> None:
    """mem0 reads these at import time: no telemetry, and its scratch folder under our data dir."""
    os.environ["MEM0_TELEMETRY"] = "false"
    os.environ.setdefault("MEM0_DIR", str(settings.data_dir / "mem0"))
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _import_ready() -> None:
    """`import mem0` imports qdrant-client, which imports fastembed (onnxruntime, Pillow, the HF hub
    client) unless qdrant-client is already loaded without it (shared/stores/vector/qdrant/client.py)."""
    from shared.stores.vector.qdrant.client import load_qdrant_client

    load_qdrant_client()


def user_scope_part(user_id: str) -> str:
    """How mem0 names a user in the scope of its message log ("user_id=<escaped id>"): the whole scope
    of the service's extractions (they name the user alone), one `&`-separated part of others."""
    _import_ready()
    from mem0.memory.main import _build_session_scope

    scope: str = _build_session_scope({"user_id": user_id})
    return scope


class _NoEntities:
    """mem0's entity store (spaCy entities kept in a second collection to boost its own search): the
    service's search is its own, so entities are neither kept nor looked up."""

    def search(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def search_batch(self, queries: list[str], *args: Any, **kwargs: Any) -> list[list[Any]]:
        return [[] for _ in queries]

    def insert(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def delete(self, *args: Any, **kwargs: Any) -> None:
        return None

    # mem0's `list` comes last: below it, `list[...]` in an annotation would name this method.
    def list(self, *args: Any, **kwargs: Any) -> builtins.list[Any]:
        return []


class LiveMemoryHistory:
    """The history store as mem0 is given it: a change row (UPDATE, DELETE) of a memory that no
    longer exists is not written. mem0's update reads the memory, rewrites it (a no-op in every
    store once it is deleted) and then writes its row with the old and new text: a delete landing
    in between would otherwise leave that row behind. A delete landing after this check is the
    service's to settle (MemoryService.update_memory erases the row once it sees the memory gone)."""

    def __init__(self, history: HistoryStore, store: VectorStore) -> None:
        self.history = history
        self.store = store

    def add_history(
        self, memory_id: str, old_memory: str | None, new_memory: str | None, event: str, **kw: Any
    ) -> None:
        if event != "ADD" and self.store.get(vector_id=memory_id) is None:
            return
        self.history.add_history(memory_id, old_memory, new_memory, event, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.history, name)  # every other call as the store answers it


def build_memory(
    settings: Settings, embedder: Embedder, llm: ExtractionLlm, history: HistoryStore, store: VectorStore
) -> Any:
    """A mem0 `Memory` made of our parts: it embeds with `embedder`, extracts with `llm`, writes
    memories through `store` (our adapter) and their history through `history`."""
    prepare_mem0_environment(settings)
    _import_ready()
    from mem0 import Memory
    from mem0.configs.base import MemoryConfig

    settings.data_dir.mkdir(parents=True, exist_ok=True)  # MEM0_DIR is under it
    config = MemoryConfig()  # what mem0 reads of it after construction: the LLM's vision switch, the version
    memory = Memory.__new__(Memory)
    memory.config = config
    memory.embedding_model = embedder
    memory.llm = llm
    memory.vector_store = store
    memory.db = LiveMemoryHistory(history, store)
    memory.collection_name = settings.collection_name
    memory.api_version = config.version
    memory.custom_instructions = config.custom_instructions
    memory.reranker = None  # the service ranks its own results
    memory._entity_store = _NoEntities()
    return memory


class Mem0Engine:
    """`MemoryEngine` on mem0, assembled by `build_memory` on the first call."""

    def __init__(
        self, settings: Settings, embedder: Embedder, llm: ExtractionLlm, history: HistoryStore, store: VectorStore
    ) -> None:
        self._memory: Lazy[Any] = Lazy(lambda: build_memory(settings, embedder, llm, history, store))

    @property
    def memory(self) -> Any:
        """mem0's `Memory` itself, for tools that measure mem0's own paths (tools/bench); the service
        goes through the methods below."""
        return self._memory.get()

    def load(self) -> None:
        self._memory.get()

    def update(self, memory_id: str, text: str, metadata: dict[str, Any] | None) -> None:
        with _our_errors():
            self.memory.update(memory_id, text=text, metadata=dict(metadata) if metadata is not None else None)


@contextmanager
def _our_errors() -> Iterator[None]:
    """mem0 wraps what our LLM raises in its own `LLMError`: the service's error inside (the model's
    503, a tenant's 429 `quota_exceeded`, a 413 cap) is raised as itself, not as a 500."""
    from shared.errors import ServiceError

    try:
        yield
    except ServiceError:
        raise
    except Exception as error:
        cause: BaseException | None = error.__cause__ or error.__context__
        seen = 0
        while cause is not None and seen < 10:
            if isinstance(cause, ServiceError):
                raise cause from None  # its own traceback is kept
            cause, seen = cause.__cause__ or cause.__context__, seen + 1
        raise
