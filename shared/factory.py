"""The composition root: every part of the service built from Settings.

Kept apart from the modules it chooses between, so that none of them imports another to build it
(the session stores used to: `sessions` built `table_state`, which imports `sessions`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.ai.llm import ChatModel, NoChatModel
    from shared.ai.quota import TokenMeter
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


def build_token_meter(settings: Settings) -> TokenMeter:
    """The caps and the tenants' token budgets (shared/ai/quota.py), counted in the ledger every
    worker shares: Table Storage with the Azure state store, else this process's memory."""
    from shared.ai.quota import TokenMeter
    from shared.stores.state.usage import token_ledger

    return TokenMeter(settings, token_ledger(settings) if settings.tenant_token_budget > 0 else None)


def build_llm(settings: Settings) -> ChatModel | NoChatModel:
    """The chat LLM of a worker: the agent answers with it, mem0 and the graph extract with it."""
    from shared.ai.llm import build_chat_model

    return build_chat_model(settings, build_token_meter(settings))


def build_memory_service(
    settings: Settings,
    sessions: SessionStore | None = None,
    events: EventStore | None = None,
    llm: ChatModel | NoChatModel | None = None,
) -> MemoryService:
    """The memory service and every part of it: embedder, LLM, vector store, history, mem0 over
    them, graph and search. Sessions, events and the LLM are the worker's own when given (the chat
    agent and the ingestion share them), else built here."""
    from shared.memory.mem0_engine import Mem0Engine, prepare_mem0_environment

    prepare_mem0_environment(settings)  # before anything imports mem0
    from shared.ai.backends import build_embedder
    from shared.graph import build_graph_store
    from shared.memory.service import MemoryService, vector_store_calls
    from shared.observability.traced import TracedEmbedder, TracedVectorStore
    from shared.search.hybrid import HybridSearcher
    from shared.stores.state.erasure import build_erasure_ledger
    from shared.stores.state.events import build_event_store
    from shared.stores.state.history import build_history_store
    from shared.stores.vector import build_vector_store

    # Spans around the ports, put on here so that no adapter knows about telemetry.
    embedder = TracedEmbedder(build_embedder(settings, build_token_meter(settings)))
    llm = llm if llm is not None else build_llm(settings)
    with vector_store_calls():
        store = TracedVectorStore(build_vector_store(settings))
    history = build_history_store(settings)
    # mem0 is imported and assembled on the engine's first call (a write, a chat turn's learning):
    # about 2 s on a new worker that a worker's first search does not wait for.
    engine = Mem0Engine(settings, embedder, llm, history, store)
    logger.info(
        "memory service ready: vector_store=%s embedder=%s llm=%s state=%s",
        settings.vector_store,
        settings.embedding_provider,
        settings.llm_provider,
        settings.resolved_state_store,
    )
    return MemoryService(
        settings,
        store=store,
        embedder=embedder,
        searcher=HybridSearcher(store, embedder, settings),
        engine=engine,
        history=history,
        sessions=sessions if sessions is not None else build_session_store(settings),
        events=events if events is not None else build_event_store(settings),
        erasure=build_erasure_ledger(settings),  # stateless: the ingestion's own reads the same marks
        graph=build_graph_store(settings, embedder, llm),
        llm=llm,
    )


def build_ingestion(
    settings: Settings, memory_service: Callable[[], MemoryService], chat_agent: Callable[[], ChatAgent]
) -> Ingestion:
    """Ingestion events: their store, and the queue when events run off the request path."""
    from shared.memory.ingest import Ingestion
    from shared.stores.queues import IngestQueue
    from shared.stores.state.erasure import build_erasure_ledger
    from shared.stores.state.events import build_event_store

    queue = IngestQueue(settings) if settings.resolved_ingest_mode == "queue" else None
    if queue is not None:
        from shared.observability import meters

        meters.observe_queue(queue.name, queue.backlog, queue.poison_count)  # the backlog and poison gauges
    events, erasure = build_event_store(settings), build_erasure_ledger(settings)
    return Ingestion(settings, events, queue, memory_service, chat_agent, erasure)
