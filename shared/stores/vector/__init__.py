"""The vector-store port (`port.py`) and its adapters: Qdrant Edge (default), Qdrant server, Chroma server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigurationProblem

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.stores.vector.port import VectorStore

MIGRATE_COMMAND = "python -m tools.ops.migrate_store"


def build_vector_store(settings: Settings) -> VectorStore:
    """The configured engine's adapter (connects and creates the collection if missing)."""
    dims = settings.resolved_embedding_dims
    name = settings.collection_name
    if settings.vector_store == "chroma":
        from shared.stores.vector.chroma import ChromaVectorStore

        return ChromaVectorStore(chroma_client(settings), name, dims, embedding_model=settings.embedding_model_id)
    if settings.qdrant_url:
        from shared.stores.vector.qdrant import QdrantServerStore
        from shared.stores.vector.qdrant.client import qdrant_client

        qdrant = qdrant_client(
            url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=int(settings.vector_store_timeout_seconds)
        )
        return QdrantServerStore(qdrant, name, dims, embedding_model=settings.embedding_model_id)
    from shared.stores.vector.edge import EdgeVectorStore

    root = settings.resolved_qdrant_path
    refuse_old_embedded_store(root)
    return EdgeVectorStore(root / name, name, dims, embedding_model=settings.embedding_model_id)


def chroma_client(settings: Settings) -> Any:
    """A client of the configured Chroma server (HTTPS and a bearer token when set)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    headers = {"Authorization": f"Bearer {settings.chroma_auth_token}"} if settings.chroma_auth_token else None
    return chromadb.HttpClient(
        host=settings.chroma_host or "localhost",
        port=settings.chroma_port,
        ssl=settings.chroma_ssl,
        headers=headers,
        settings=ChromaSettings(anonymized_telemetry=False),
    )


def is_old_embedded_store(root: Path) -> bool:
    """A folder written by qdrant-client's local mode, the embedded store before Qdrant Edge."""
    return (root / "meta.json").is_file() and (root / "collection").is_dir()


def refuse_old_embedded_store(root: Path) -> None:
    if is_old_embedded_store(root):
        raise ConfigurationProblem(
            f"{root} holds memories of the previous embedded store (qdrant-client local mode), which this "
            f"version no longer reads: run `{MIGRATE_COMMAND}` once to move them into the new engine "
            "(the old folder is kept beside it), or point QDRANT_PATH/DATA_DIR at another folder"
        )
