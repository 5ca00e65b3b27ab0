"""The collection layout on a Qdrant server: the vectors, the payload indexes, the server version."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from shared.errors import ConfigurationProblem
from shared.stores.vector.port import (
    DAY_KEY,
    ENDED_KEY,
    EXPIRES_KEY,
    MONTH_KEY,
    MORTAL_KEY,
    NORM_KEY,
    SCOPE_TAG_KEY,
    SEQ_KEY,
    SPEAKER_KEY,
    TENANT_KEY,
    TS_KEY,
    USER_KEY,
    VALID_UNTIL_KEY,
)
from shared.stores.vector.qdrant.keywords import SPARSE_KEY, sparse_params

logger = logging.getLogger(__name__)


CATEGORY_KEY = "category"
PAGE_SIZE = 256  # scroll page for listing a user's memories: bounded responses, few round trips


# The server version this adapter needs: the idf of a sparse search computed over a corpus filter
# (`SearchParams(idf=IdfCorpusParams(...))`, the user's own statistics) arrived in Qdrant 1.19.0.
MIN_SERVER_VERSION = (1, 19, 0)
# Collection metadata naming the layout: set when the collection is created in it, or by
# `python -m tools.ops.migrate_store` once every memory carries its keyword vector.
LAYOUT_KEY = "memory_layout"
LAYOUT = "dense+data_bm25"


def create_params(dims: int) -> dict[str, Any]:
    """The keyword arguments of `create_collection` for this layout."""
    return {
        "vectors_config": models.VectorParams(size=dims, distance=models.Distance.COSINE),
        "sparse_vectors_config": {SPARSE_KEY: sparse_params()},
        "metadata": {LAYOUT_KEY: LAYOUT},
    }


def payload_indexes(local: bool = False) -> dict[str, models.PayloadSchemaParams]:
    """The payload indexes; the same in local mode, which accepts them and scans payloads instead.

    No full-text index on the memory text: the keyword side is the sparse vector (`keywords.py`).
    """
    return {
        USER_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
        SEQ_KEY: models.IntegerIndexParams(
            type=models.IntegerIndexType.INTEGER, lookup=True, range=True, enable_hnsw=False
        ),
        TS_KEY: models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=False),
        # the stats' facets: memories per day and per category
        DAY_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        CATEGORY_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        MONTH_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        SPEAKER_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        "agent_id": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        "run_id": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        EXPIRES_KEY: models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=False),
        # "not expired" is on every search: its `_mortal` test must be an index lookup, not a payload read.
        MORTAL_KEY: models.BoolIndexParams(type=models.BoolIndexType.BOOL),
        # "valid now" (issue 22) is on every read as well: `_ended` and `_valid_until` alike.
        VALID_UNTIL_KEY: models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=False),
        ENDED_KEY: models.BoolIndexParams(type=models.BoolIndexType.BOOL),
        TENANT_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True, enable_hnsw=False),
        # the duplicate check (shared/memory/dedupe.py): one `in` lookup, and the scope of its nearest query
        NORM_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        SCOPE_TAG_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD),
    }


def is_local(client: QdrantClient) -> bool:
    """Whether the client runs qdrant-client's local mode (the same rule its constructor uses)."""
    options = client.init_options
    return options.get("location") == ":memory:" or options.get("path") is not None


def already_exists(error: Exception) -> bool:
    if isinstance(error, UnexpectedResponse):
        return error.status_code == 409 or "already exists" in str(error).lower()
    # local mode says it with a ValueError
    return isinstance(error, ValueError) and "already exists" in str(error).lower()


def check_vectors(name: str, info: models.CollectionInfo, dims: int) -> None:
    vectors: Any = info.config.params.vectors
    if isinstance(vectors, Mapping):
        vectors = vectors.get("")
    if not isinstance(vectors, models.VectorParams):
        raise ConfigurationProblem(f"collection '{name}' has no unnamed dense vector; use another COLLECTION_NAME")
    if vectors.size != dims:
        raise ConfigurationProblem(
            f"collection '{name}' holds {vectors.size}-dimension vectors but the configured embedder makes "
            f"{dims}: use another COLLECTION_NAME for this embedder (or set EMBEDDING_DIMS to match)"
        )
    if vectors.distance != models.Distance.COSINE:
        raise ConfigurationProblem(f"collection '{name}' uses {vectors.distance} distance; this service needs Cosine")


MODEL_KEY = "embedding_model"  # collection metadata: the model whose vectors the collection holds


def check_model(client: QdrantClient, name: str, info: models.CollectionInfo, model: str | None) -> None:
    """Refuses a collection whose memories another embedding model embedded (vectors of two models
    cannot be compared, even at one size); records the model where none is recorded yet (a
    collection written before the record existed holds the configured model's vectors, the only
    one it could be opened with). `model` None checks nothing (tools that copy vectors as stored)."""
    if model is None:
        return
    found = (info.config.metadata or {}).get(MODEL_KEY)
    if found == model:
        return
    if isinstance(found, str) and (info.points_count or 0) > 0:
        raise ConfigurationProblem(
            f"collection '{name}' holds memories embedded with {found}, but the configured embedder is {model}: "
            "vectors of two models cannot be compared. Use another COLLECTION_NAME for this embedder (and add the "
            "memories again), or configure the previous model"
        )
    client.update_collection(name, metadata={MODEL_KEY: model})


def check_layout(name: str, info: models.CollectionInfo) -> None:
    """Refuses a collection an earlier version made (no keyword vector) or a migration left half done."""
    from shared.stores.vector import MIGRATE_COMMAND

    sparse = (info.config.params.sparse_vectors or {}).get(SPARSE_KEY)
    marked = (info.config.metadata or {}).get(LAYOUT_KEY) == LAYOUT
    if sparse is None or not marked:
        raise ConfigurationProblem(
            f"collection '{name}' is in an earlier layout of this service (no '{SPARSE_KEY}' sparse vector for BM25, "
            "or a migration into it that did not finish): run `QDRANT_URL=... "
            f"{MIGRATE_COMMAND}` once to add it to every memory, or set COLLECTION_NAME to a new collection"
        )
    if sparse.modifier != models.Modifier.IDF:
        raise ConfigurationProblem(
            f"collection '{name}' has a '{SPARSE_KEY}' sparse vector without the IDF modifier; "
            "this service needs modifier=idf: use another COLLECTION_NAME"
        )


def server_version(text: str) -> tuple[int, ...] | None:
    """(major, minor, patch) of a version string such as "1.19.0" or "v1.19.0-rc1", or None."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def check_server_version(client: QdrantClient) -> str:
    """The server's version; a server older than MIN_SERVER_VERSION is refused."""
    found = str(client.info().version)
    version = server_version(found)
    needed = ".".join(str(part) for part in MIN_SERVER_VERSION)
    if version is None:
        logger.warning("Qdrant server version %r not understood; this adapter needs %s or later", found, needed)
    elif version < MIN_SERVER_VERSION:
        raise ConfigurationProblem(
            f"the Qdrant server at QDRANT_URL is version {found}; this service needs {needed} or later "
            "(the user-scoped idf of its BM25 sparse search): upgrade the server"
        )
    return found


def ensure_indexes(client: QdrantClient, local: bool, name: str, info: models.CollectionInfo) -> None:
    existing = info.payload_schema or {}
    for field_name, params in payload_indexes(local).items():
        if field_name in existing:
            continue
        try:
            with warnings.catch_warnings():
                # local mode warns that payload indexes do nothing there; that is known and documented
                warnings.simplefilter("ignore", UserWarning)
                client.create_payload_index(name, field_name=field_name, field_schema=params, wait=True)
        except UnexpectedResponse as error:
            if not already_exists(error):
                raise
