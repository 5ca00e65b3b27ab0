"""The composition root: every part of the service built from Settings.

Kept apart from the modules it chooses between, so that none of them imports another to build it
(the session stores used to: `sessions` built `table_state`, which imports `sessions`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.chat.agent import ChatAgent
    from shared.memory.ingest import Ingestion
    from shared.memory.service import MemoryService
    from shared.settings import Settings
    from shared.stores.state.events import EventStore
    from shared.stores.state.sessions import SessionStore

logger = logging.getLogger(__name__)


def build_session_store(settings: Settings) -> SessionStore:
    """Chat sessions in Azure Table Storage when configured, else local files under DATA_DIR."""
    if settings.resolved_state_store == "azure_table":
        from shared.stores.state.tables import TableSessionStore

        return TableSessionStore(settings)
    from shared.stores.state.sessions import LocalSessionStore

    return LocalSessionStore(settings.data_dir / "sessions")


def build_memory_service(
    settings: Settings, sessions: SessionStore | None = None, events: EventStore | None = None
) -> MemoryService:
    """The memory service: embedder, history, LLM, vector store, mem0 over them, graph and search."""
    from shared.ai.backends import build_embedder, build_memory, prepare_mem0_environment

    prepare_mem0_environment(settings)
    from shared.ai.llm import build_chat_model
    from shared.graph import build_graph_store
    from shared.lazy import Lazy
    from shared.memory.service import MemoryService, vector_store_calls
    from shared.observability.traced import TracedEmbedder, TracedVectorStore

    # Spans around the ports, put on here so that no adapter knows about telemetry.
    embedder = TracedEmbedder(build_embedder(settings))
    llm = build_chat_model(settings)
    from shared.stores.vector import build_vector_store

    with vector_store_calls():
        store = TracedVectorStore(build_vector_store(settings))

    def mem0_memory() -> Any:
        # Importing mem0 imports qdrant-client, fastembed's hub client and mem0's hosted client:
        # about 2 s on a new worker. Searches never need it (they query the store directly), so
        # it is built on the first write, chat turn or history read, not before a worker's first search.
        from shared.stores.state.history import build_history_store

        with vector_store_calls():
            return build_memory(settings, embedder, llm, build_history_store(settings), store)

    memory: Lazy[Any] = Lazy(mem0_memory)
    graph = build_graph_store(settings, embedder, llm)
    from shared.search.hybrid import HybridSearcher

    searcher = HybridSearcher(store, embedder, settings)
    logger.info(
        "memory service ready: vector_store=%s embedder=%s llm=%s state=%s",
        settings.vector_store,
        settings.embedding_provider,
        settings.llm_provider,
        settings.resolved_state_store,
    )
    service = MemoryService(memory, store, embedder, settings, searcher=searcher, graph=graph)
    service.sessions = sessions  # erased with the user's memories
    service.events = events  # so are the inputs of the user's events
    return service


def build_ingestion(
    settings: Settings, memory_service: Callable[[], MemoryService], chat_agent: Callable[[], ChatAgent]
) -> Ingestion:
    """Ingestion events: their store, and the queue when events run off the request path."""
    from shared.memory.ingest import Ingestion
    from shared.stores.queues import IngestQueue
    from shared.stores.state.events import build_event_store

    queue = IngestQueue(settings) if settings.resolved_ingest_mode == "queue" else None
    if queue is not None:
        from shared.observability import meters

        meters.observe_queue(queue.name, queue.backlog, queue.poison_count)  # the backlog and poison gauges
    return Ingestion(settings, build_event_store(settings), queue, memory_service, chat_agent)
