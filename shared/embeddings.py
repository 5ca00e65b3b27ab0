"""Embedders plugged into mem0.

mem0's own FastEmbed wrapper cannot load a model from a folder and its OpenAI wrappers have no
bounded retry or Entra ID support, so the service injects these instead. They follow mem0's
`EmbeddingBase` contract (`embed`, `embed_batch`) without importing mem0, so a test or benchmark
can use them alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ConfigurationProblem

if TYPE_CHECKING:
    from shared.llm import OpenAIClientFactory

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the memory service needs from an embedding model."""

    dims: int

    def embed(self, text: str, memory_action: str | None = None) -> list[float]: ...

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]: ...


class LocalEmbedder:
    """A sentence-transformers model run with fastembed on ONNX Runtime, loaded once per worker."""

    def __init__(self, model_name: str, model_path: Path | None, dims: int, threads: int | None = None) -> None:
        self.model_name = model_name
        self.model_path = model_path
        self.dims = dims
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()
        # mem0 reads `config.embedding_dims` from whatever embedder it holds.
        self.config = _EmbedderConfigView(dims)

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from fastembed import TextEmbedding

                    kwargs: dict[str, Any] = {"model_name": self.model_name, "threads": self.threads}
                    if self.model_path is not None:
                        if not (self.model_path / "model.onnx").is_file():
                            raise ConfigurationProblem(
                                f"LOCAL_EMBEDDING_MODEL_PATH={self.model_path} holds no model.onnx"
                            )
                        kwargs["specific_model_path"] = str(self.model_path)
                    self._model = TextEmbedding(**kwargs)
        return self._model

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        return self.embed_batch([text], memory_action)[0]

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]:
        model = self._load()
        # One call for the whole request; inside it ONNX Runtime runs 16 texts at a time. Each run is
        # padded to its longest text and ONNX Runtime's arena keeps the largest run's buffers, so
        # 64-text runs raised the worker's peak RSS by ~190 MB for no gain in throughput (measured).
        vectors = list(model.embed([t.replace("\n", " ") for t in texts], batch_size=16))
        return [v.tolist() for v in vectors]


class OpenAIEmbedder:
    """Embeddings from Azure OpenAI or any OpenAI-compatible endpoint, through the official SDK."""

    def __init__(self, clients: OpenAIClientFactory, model: str, dims: int, send_dimensions: bool) -> None:
        self._clients = clients
        self.model = model
        self.dims = dims
        self._send_dimensions = send_dimensions
        self.config = _EmbedderConfigView(dims)

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        return self.embed_batch([text], memory_action)[0]

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]:
        from shared.llm import call_with_retries

        cleaned = [t.replace("\n", " ") for t in texts]
        extra: dict[str, Any] = {"dimensions": self.dims} if self._send_dimensions else {}
        vectors: list[list[float]] = []
        # 2048 inputs is the API's per-request ceiling.
        for start in range(0, len(cleaned), 2048):
            chunk = cleaned[start : start + 2048]

            def create(chunk: list[str] = chunk) -> Any:
                return self._clients.client().embeddings.create(model=self.model, input=chunk, **extra)

            response = call_with_retries("embeddings", create, self._clients.max_retries)
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors.extend(list(item.embedding) for item in ordered)
        for vector in vectors:
            if len(vector) != self.dims:
                raise ConfigurationProblem(
                    f"the embedding model returned {len(vector)} dimensions but EMBEDDING_DIMS is {self.dims}"
                )
        return vectors


class _EmbedderConfigView:
    """The slice of mem0's embedder config that mem0 reads back from the embedder."""

    def __init__(self, dims: int) -> None:
        self.embedding_dims = dims
