"""Builds the configured embedder: the local ONNX model (the zero-setup default) or an OpenAI /
Azure OpenAI deployment. mem0 embeds with it too (shared/memory/mem0_engine.py assembles mem0)."""

from __future__ import annotations

import logging

from shared.ai.embeddings import Embedder, LocalEmbedder, MultilingualEmbedder, OpenAIEmbedder
from shared.ai.local_models import MULTILINGUAL
from shared.ai.quota import TokenMeter
from shared.settings import Settings

logger = logging.getLogger(__name__)


def build_embedder(settings: Settings, meter: TokenMeter | None = None) -> Embedder:
    """The embedder; a remote one charges its calls to `meter` (the worker's, from shared/factory.py)."""
    dims = settings.resolved_embedding_dims
    if settings.embedding_provider == "local":
        if settings.local_embedding_model == MULTILINGUAL:
            return MultilingualEmbedder(dims, settings.local_embedding_threads)
        return LocalEmbedder(
            settings.local_embedding_model, settings.local_embedding_model_path, dims, settings.local_embedding_threads
        )
    from shared.ai.llm import OpenAIClientFactory

    clients = OpenAIClientFactory(settings, settings.embedding_provider, meter)
    if settings.embedding_provider == "azure_openai":
        model = settings.azure_embedding_deployment or settings.azure_embedding_model
        return OpenAIEmbedder(clients, model, dims, send_dimensions=settings.embedding_dims is not None)
    return OpenAIEmbedder(clients, settings.openai_embedding_model, dims, send_dimensions=False)
