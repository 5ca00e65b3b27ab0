"""The worker's long-lived objects, built lazily on first use and then reused by every invocation.

`import function_app` must do no I/O (the host indexes functions by importing it), so nothing here
runs at import. A failed build is not cached: the next request tries again, which is how a worker
recovers when a backend that was down at start comes back.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from shared.errors import ServiceError

if TYPE_CHECKING:
    from shared.chat.agent import ChatAgent
    from shared.memory.service import MemoryService
    from shared.settings import Settings
    from shared.stores.state.sessions import SessionStore

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_memory_service: MemoryService | None = None
_chat_agent: ChatAgent | None = None
_session_store: SessionStore | None = None
_build_failure: ServiceError | None = None


def get_memory_service() -> MemoryService:
    """The worker's memory service (mem0, vector store, embedder, history)."""
    global _memory_service
    if _memory_service is None:
        from shared.settings import get_settings

        with _lock:
            if _memory_service is None:
                global _build_failure
                try:
                    _memory_service = _build_memory_service(get_settings())
                except ServiceError as error:
                    _build_failure = error  # what /health reports until a build succeeds
                    raise
                _build_failure = None
    return _memory_service


def last_build_failure() -> ServiceError | None:
    """Why the memory service could not be built on this worker (None once it is built)."""
    return _build_failure


def _build_memory_service(settings: Settings) -> MemoryService:
    from shared.ai.backends import build_embedder, build_memory, prepare_mem0_environment

    prepare_mem0_environment(settings)
    from shared.ai.llm import build_chat_model
    from shared.graph import build_graph_store
    from shared.memory.service import MemoryService, vector_store_calls
    from shared.observability.traced import TracedEmbedder, TracedVectorStore
    from shared.stores.state.history import build_history_store

    # Spans around the ports, put on here so that no adapter knows about telemetry.
    embedder = TracedEmbedder(build_embedder(settings))
    history = build_history_store(settings)
    llm = build_chat_model(settings)
    from shared.stores.vector import build_vector_store

    with vector_store_calls():
        store = TracedVectorStore(build_vector_store(settings))
        memory = build_memory(settings, embedder, llm, history, store)
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
    service.sessions = get_session_store()  # erased with the user's memories
    return service


def get_chat_agent() -> ChatAgent:
    """The worker's chat agent; it shares the memory service."""
    global _chat_agent
    if _chat_agent is None:
        from shared.settings import get_settings

        if not get_settings().llm_configured:
            from shared.errors import LlmNotConfigured

            raise LlmNotConfigured()  # said before anything heavy is built
        service = get_memory_service()
        with _lock:
            if _chat_agent is None:
                from shared.chat.agent import build_chat_agent

                _chat_agent = build_chat_agent(get_settings(), service, get_session_store())
    return _chat_agent


def get_session_store() -> SessionStore:
    """The worker's chat session store (local files or Table Storage)."""
    global _session_store
    if _session_store is None:
        from shared.factory import build_session_store
        from shared.settings import get_settings

        with _lock:
            if _session_store is None:
                _session_store = build_session_store(get_settings())
    return _session_store


def peek_memory_service() -> MemoryService | None:
    """The memory service if this worker already built it (health checks must not build it)."""
    return _memory_service


def reset() -> None:
    """Forget every built object and the settings (tests, and a config reload)."""
    global _memory_service, _chat_agent, _session_store
    with _lock:
        for obj in (_chat_agent, _session_store, _memory_service):
            close = getattr(obj, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing is best effort: the objects are dropped anyway
                    logger.debug("error while closing %r", obj, exc_info=True)
        _memory_service = None
        _chat_agent = None
        _session_store = None
        from shared.settings import get_settings

        get_settings.cache_clear()


def describe() -> dict[str, Any]:
    return {"memory_service_built": _memory_service is not None, "chat_agent_built": _chat_agent is not None}
