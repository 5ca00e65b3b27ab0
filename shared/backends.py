"""Builds mem0 against the configured stores, with our embedder, LLM and history store plugged in.

mem0 builds its own embedder, LLM and SQLite history from provider names; we let it, with inert
settings, then replace those three parts with ours (see `shared/embeddings.py`, `shared/llm.py`,
`shared/history.py`). The vector store is mem0's own adapter, given a client we built so that
timeouts, API keys and the embedded path are under our control.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from shared.embeddings import Embedder, LocalEmbedder, OpenAIEmbedder
from shared.errors import ConfigurationProblem
from shared.settings import Settings

logger = logging.getLogger(__name__)


def prepare_mem0_environment(settings: Settings) -> None:
    """mem0 reads these at import time: no telemetry, and its scratch folder under our data dir."""
    os.environ["MEM0_TELEMETRY"] = "false"
    os.environ.setdefault("MEM0_DIR", str(settings.data_dir / "mem0"))
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def build_embedder(settings: Settings) -> Embedder:
    dims = settings.resolved_embedding_dims
    if settings.embedding_provider == "local":
        return LocalEmbedder(
            settings.local_embedding_model, settings.local_embedding_model_path, dims, settings.local_embedding_threads
        )
    from shared.llm import OpenAIClientFactory

    clients = OpenAIClientFactory(settings, settings.embedding_provider)
    if settings.embedding_provider == "azure_openai":
        model = settings.azure_embedding_deployment or settings.azure_embedding_model
        return OpenAIEmbedder(clients, model, dims, send_dimensions=settings.embedding_dims is not None)
    return OpenAIEmbedder(clients, settings.openai_embedding_model, dims, send_dimensions=False)


def build_vector_store_config(settings: Settings) -> dict[str, Any]:
    dims = settings.resolved_embedding_dims
    if settings.vector_store == "chroma":
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        headers = {"Authorization": f"Bearer {settings.chroma_auth_token}"} if settings.chroma_auth_token else None
        client = chromadb.HttpClient(
            host=settings.chroma_host or "localhost",
            port=settings.chroma_port,
            ssl=settings.chroma_ssl,
            headers=headers,
            settings=ChromaSettings(anonymized_telemetry=False),
        )
        return {"provider": "chroma", "config": {"collection_name": settings.collection_name, "client": client}}

    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        qdrant = QdrantClient(
            url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=int(settings.vector_store_timeout_seconds)
        )
    else:
        path = settings.resolved_qdrant_path
        path.mkdir(parents=True, exist_ok=True)
        qdrant = QdrantClient(path=str(path))
    return {
        "provider": "qdrant",
        "config": {"collection_name": settings.collection_name, "embedding_model_dims": dims, "client": qdrant},
    }


def check_collection_dims(memory: Any, settings: Settings) -> None:
    """Refuse to start on a collection made by another embedder, instead of failing inside NumPy later."""
    dims = settings.resolved_embedding_dims
    store = memory.vector_store
    found: int | None = None
    if settings.vector_store == "qdrant":
        info = store.client.get_collection(store.collection_name)
        vectors = info.config.params.vectors
        found = getattr(vectors, "size", None)
    else:
        peek = store.collection.peek(limit=1)
        embeddings = peek.get("embeddings") if isinstance(peek, dict) else getattr(peek, "embeddings", None)
        if embeddings is not None and len(embeddings) > 0:
            found = len(embeddings[0])
    if found is not None and found != dims:
        raise ConfigurationProblem(
            f"collection '{settings.collection_name}' holds {found}-dimension vectors but the configured embedder "
            f"makes {dims}: use another COLLECTION_NAME for this embedder (or set EMBEDDING_DIMS to match)"
        )


def build_memory(settings: Settings, embedder: Embedder, llm: Any, history: Any) -> Any:
    """A mem0 `Memory` on the configured vector store, using our embedder, LLM and history store."""
    prepare_mem0_environment(settings)
    from mem0 import Memory
    from mem0.configs.base import MemoryConfig

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = MemoryConfig(
        vector_store=build_vector_store_config(settings),
        # Inert placeholders: mem0 insists on building an embedder and an LLM client; both are
        # replaced below and never called. Building them does no I/O.
        embedder={"provider": "openai", "config": {"api_key": "injected", "embedding_dims": embedder.dims}},
        llm={"provider": "openai", "config": {"api_key": "injected"}},
        history_db_path=":memory:",
    )
    memory = Memory(config)
    memory.embedding_model = embedder
    memory.llm = llm
    memory.db.close()
    memory.db = history
    # mem0's Qdrant adapter would fetch a BM25 model from a hub on first write; our own keyword
    # ranking (shared/search.py) covers that need offline.
    if hasattr(memory.vector_store, "_bm25_encoder"):
        memory.vector_store._bm25_encoder = False
    check_collection_dims(memory, settings)
    if settings.vector_store == "qdrant" and not settings.qdrant_url:
        tune_embedded_qdrant(memory.vector_store.client)
        from shared.embedded_store import EmbeddedQdrantStore

        memory.vector_store = EmbeddedQdrantStore(memory.vector_store)
    return memory


def tune_embedded_qdrant(client: Any) -> None:
    """Let the embedded Qdrant commit without an fsync per point.

    Local mode writes every point in its own SQLite transaction; with the default rollback journal
    each one waits for the disk (~8 ms here), which caps a batch add near 100 points/s. WAL with
    synchronous=NORMAL survives a process crash and loses at most the last commits on power loss,
    the right trade for a single-machine default. The hook is private API, so it is best effort.
    """
    try:
        collections = client._client.collections.values()
        for collection in collections:
            connection = getattr(collection.storage, "storage", None)
            if connection is not None:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
    except Exception:  # an internal layout change only costs speed
        logger.debug("could not tune the embedded Qdrant storage", exc_info=True)
