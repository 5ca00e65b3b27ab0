"""Builds mem0 against the configured stores, with our embedder, LLM and history store plugged in.

mem0 builds its own embedder, LLM and SQLite history from provider names; we let it, with inert
settings, then replace those three parts with ours (see `shared/ai/embeddings.py`, `shared/ai/llm.py`,
`shared/stores/state/history.py`). The vector store is our own adapter (`shared/stores/vector/`), which mem0
writes through and our search queries directly.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING, Any

from shared.ai.embeddings import Embedder, LocalEmbedder, MultilingualEmbedder, OpenAIEmbedder
from shared.ai.local_models import MULTILINGUAL
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.stores.vector.port import VectorStore

logger = logging.getLogger(__name__)


def prepare_mem0_environment(settings: Settings) -> None:
    """mem0 reads these at import time: no telemetry, and its scratch folder under our data dir."""
    os.environ["MEM0_TELEMETRY"] = "false"
    os.environ.setdefault("MEM0_DIR", str(settings.data_dir / "mem0"))
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def build_embedder(settings: Settings) -> Embedder:
    dims = settings.resolved_embedding_dims
    if settings.embedding_provider == "local":
        if settings.local_embedding_model == MULTILINGUAL:
            return MultilingualEmbedder(dims, settings.local_embedding_threads)
        return LocalEmbedder(
            settings.local_embedding_model, settings.local_embedding_model_path, dims, settings.local_embedding_threads
        )
    from shared.ai.llm import OpenAIClientFactory

    clients = OpenAIClientFactory(settings, settings.embedding_provider)
    if settings.embedding_provider == "azure_openai":
        model = settings.azure_embedding_deployment or settings.azure_embedding_model
        return OpenAIEmbedder(clients, model, dims, send_dimensions=settings.embedding_dims is not None)
    return OpenAIEmbedder(clients, settings.openai_embedding_model, dims, send_dimensions=False)


def build_memory(settings: Settings, embedder: Embedder, llm: Any, history: Any, store: VectorStore) -> Any:
    """A mem0 `Memory` writing through our vector-store adapter, with our embedder, LLM and history."""
    prepare_mem0_environment(settings)
    from shared.stores.vector.qdrant.client import load_qdrant_client, qdrant_client

    load_qdrant_client()  # before mem0 imports it: without fastembed
    from mem0 import Memory
    from mem0.configs.base import MemoryConfig

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = MemoryConfig(
        # Inert placeholders: mem0 insists on building a vector store, an embedder and an LLM
        # client from provider names; all three are replaced below. Building them does no I/O
        # (the placeholder store is an in-memory collection that is never used).
        vector_store={
            "provider": "qdrant",
            "config": {
                "collection_name": "placeholder",
                "embedding_model_dims": embedder.dims,
                "client": qdrant_client(location=":memory:"),
            },
        },
        embedder={"provider": "openai", "config": {"api_key": "injected", "embedding_dims": embedder.dims}},
        llm={"provider": "openai", "config": {"api_key": "injected"}},
        history_db_path=":memory:",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # local mode's note on payload indexes, about the placeholder
        memory = Memory(config)
    memory.embedding_model = embedder
    memory.llm = llm
    memory.db.close()
    memory.db = history
    memory.vector_store = store
    return memory
