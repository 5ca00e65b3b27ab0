"""The worker's long-lived objects, built lazily on first use and then reused by every invocation.

`import function_app` must do no I/O (the host indexes functions by importing it), so nothing here
runs at import. Every build is the composition root's (`shared/factory.py`); this module only holds
one of each per worker. A failed build is not kept: the next request tries again, which is how a
worker recovers when a backend that was down at start comes back.
"""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any

from shared.errors import ServiceError
from shared.lazy import Lazy

if TYPE_CHECKING:
    from shared.ai.llm import ChatModel, NoChatModel
    from shared.chat.agent import ChatAgent
    from shared.memory.ingest import Ingestion
    from shared.memory.service import MemoryService
    from shared.stores.state.sessions import SessionStore

logger = logging.getLogger(__name__)

_build_failure: ServiceError | None = None


def _settings() -> Any:
    from shared.settings import get_settings

    return get_settings()


def _memory_service() -> MemoryService:
    from shared.factory import build_memory_service

    global _build_failure
    try:
        service = build_memory_service(_settings(), get_session_store(), get_ingestion().events, _llm.get())
    except ServiceError as error:
        _build_failure = error  # what /health reports until a build succeeds
        raise
    _build_failure = None
    atexit.register(_close_at_exit)  # once per build: the next happens only after a reset
    return service


def _chat_agent() -> ChatAgent:
    from shared.chat.agent import build_chat_agent

    return build_chat_agent(_settings(), get_memory_service(), get_session_store(), _llm.get(), get_ingestion())


def _session_store() -> SessionStore:
    from shared.factory import build_session_store

    return build_session_store(_settings())


def _chat_model() -> ChatModel | NoChatModel:
    from shared.factory import build_llm

    return build_llm(_settings())


def _ingestion() -> Ingestion:
    from shared.factory import build_ingestion

    return build_ingestion(_settings(), get_memory_service, get_chat_agent)


_memory: Lazy[MemoryService] = Lazy(_memory_service)
_ingest: Lazy[Ingestion] = Lazy(_ingestion)
_chat: Lazy[ChatAgent] = Lazy(_chat_agent)
_sessions: Lazy[SessionStore] = Lazy(_session_store)
_llm: Lazy[ChatModel | NoChatModel] = Lazy(_chat_model)  # one per worker: the agent's, mem0's and the graph's


def get_memory_service() -> MemoryService:
    """The worker's memory service (mem0, vector store, embedder, history)."""
    return _memory.get()


def _close_at_exit() -> None:
    """Closes what holds files (the store's folder lock, the history file) before the interpreter
    tears modules down."""
    reset()


def last_build_failure() -> ServiceError | None:
    """Why the memory service could not be built on this worker (None once it is built)."""
    return _build_failure


def get_chat_agent() -> ChatAgent:
    """The worker's chat agent; it shares the memory service."""
    if _chat.peek() is None and not _settings().llm_configured:
        from shared.errors import LlmNotConfigured

        raise LlmNotConfigured()  # said before anything heavy is built
    get_memory_service()  # built first, outside the agent's build
    return _chat.get()


def get_ingestion() -> Ingestion:
    """The worker's ingestion events (store, queue). Building it builds neither mem0 nor the agent."""
    return _ingest.get()


def get_session_store() -> SessionStore:
    """The worker's chat session store (local files or Table Storage)."""
    return _sessions.get()


def peek_memory_service() -> MemoryService | None:
    """The memory service if this worker already built it (health checks must not build it)."""
    return _memory.peek()


def reset() -> None:
    """Forget every built object and the settings (tests, and a config reload)."""
    ingestion = _ingest.reset()
    extra = (ingestion.events, ingestion.queue) if ingestion is not None else ()
    _llm.reset()
    for obj in (_chat.reset(), _sessions.reset(), _memory.reset(), *extra):
        close = getattr(obj, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing is best effort: the objects are dropped anyway
                logger.debug("error while closing %r", obj, exc_info=True)
    from shared.settings import get_settings

    get_settings.cache_clear()


def describe() -> dict[str, Any]:
    return {"memory_service_built": _memory.peek() is not None, "chat_agent_built": _chat.peek() is not None}
