"""Building the service's parts inside the benchmark process, configured exactly as a worker would be."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.bench.host import service_env

if TYPE_CHECKING:
    from shared.memory.service import MemoryService
    from shared.settings import Settings


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` is exactly `env` inside the block (settings are read from it), then restored."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_for(data_dir: Path, extra_env: Mapping[str, str] | None = None) -> Settings:
    """The settings a dev host started on `data_dir` with `extra_env` reads, without the shell's own."""
    # mem0 reads MEM0_TELEMETRY when it is first imported, which may be later than this call.
    os.environ["MEM0_TELEMETRY"] = "false"
    from shared.settings import Settings

    with environment(service_env(data_dir, extra_env)):
        return Settings()


def build_service(settings: Settings) -> MemoryService:
    """The worker's memory service, built by the same function the worker uses (shared/factory.py)."""
    from shared import factory

    return factory.build_memory_service(settings)


def build_plain_mem0(settings: Settings, client: Any = None) -> Any:
    """Plain mem0 `Memory` on the same store kind and embedder, with mem0's own SQLite history.

    Only what mem0 cannot do by itself here is supplied: our ONNX embedder (mem0's FastEmbed wrapper
    cannot load a model from a folder), the inert LLM, and no BM25 model (mem0 would fetch one from
    a hub). None of the service's own store work is applied (shared.memory.mem0_engine.build_memory wraps the
    store in our own adapter): that is what we measure against.
    `client` shares an open store client (the embedded Qdrant folder admits one client per process).
    """
    from shared.ai.backends import build_embedder
    from shared.ai.llm import NoChatModel
    from shared.memory.mem0_engine import prepare_mem0_environment

    prepare_mem0_environment(settings)
    from mem0 import Memory
    from mem0.configs.base import MemoryConfig
    from mem0.memory.storage import SQLiteManager

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = build_embedder(settings)
    store = _store_config(settings, client if client is not None else _mem0_client(settings))
    config = MemoryConfig(
        vector_store=store,
        embedder={"provider": "openai", "config": {"api_key": "unused", "embedding_dims": embedder.dims}},
        llm={"provider": "openai", "config": {"api_key": "unused"}},
        history_db_path=str(settings.data_dir / "mem0-history.db"),
    )
    memory = Memory(config)
    memory.embedding_model = embedder
    memory.llm = NoChatModel()
    if hasattr(memory.vector_store, "_bm25_encoder"):
        memory.vector_store._bm25_encoder = False  # mem0 would fetch a BM25 model from a hub
    if not isinstance(memory.db, SQLiteManager):
        raise RuntimeError(f"mem0 built {type(memory.db).__name__} for its history, expected SQLiteManager")
    return memory


def _mem0_client(settings: Settings) -> Any:
    """The client mem0's own adapter would be given: a Chroma server, a Qdrant server, or local mode."""
    if settings.vector_store == "chroma":
        import chromadb

        return chromadb.HttpClient(host=settings.chroma_host or "localhost", port=settings.chroma_port)
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        return QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
    path = settings.data_dir / "mem0-local-qdrant"
    path.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(path))


def _store_config(settings: Settings, client: Any) -> dict[str, Any]:
    if settings.vector_store == "chroma":
        return {"provider": "chroma", "config": {"collection_name": settings.collection_name, "client": client}}
    return {
        "provider": "qdrant",
        "config": {
            "collection_name": settings.collection_name,
            "embedding_model_dims": settings.resolved_embedding_dims,
            "client": client,
        },
    }


def close_memory(memory: Any) -> None:
    """Release the embedded Qdrant folder lock and the history file; best effort."""
    for closer in (
        getattr(getattr(getattr(memory, "vector_store", None), "client", None), "close", None),
        getattr(getattr(memory, "db", None), "close", None),
    ):
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()
