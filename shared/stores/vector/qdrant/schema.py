"""The collection layout on a Qdrant server: payload indexes and the full-text index parameters."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from shared.errors import ConfigurationProblem
from shared.stores.vector.port import (
    EXPIRES_KEY,
    MONTH_KEY,
    MORTAL_KEY,
    SEQ_KEY,
    SPEAKER_KEY,
    TENANT_KEY,
    TEXT_KEY,
    TS_KEY,
    USER_KEY,
)

logger = logging.getLogger(__name__)


CATEGORY_KEY = "category"
PAGE_SIZE = 256  # scroll page for listing a user's memories: bounded responses, few round trips


def text_index_params(local: bool) -> models.TextIndexParams:
    """The `data` full-text index; local mode only runs text queries on the default tokenizer."""
    bm25 = models.TextScoringParams(type=models.TextScoringType.BM25)
    if local:
        return models.TextIndexParams(
            type=models.TextIndexType.TEXT,
            tokenizer=models.TokenizerType.WORD,
            lowercase=True,
            scoring=bm25,
            enable_hnsw=False,
        )
    return models.TextIndexParams(
        type=models.TextIndexType.TEXT,
        tokenizer=models.TokenizerType.MULTILINGUAL,
        lowercase=True,
        stemmer=models.SnowballParams(type=models.Snowball.SNOWBALL, language=models.SnowballLanguage.ENGLISH),
        stopwords=models.StopwordsSet(languages=[models.Language.ENGLISH]),
        scoring=bm25,
        enable_hnsw=False,
    )


def payload_indexes(local: bool) -> dict[str, models.PayloadSchemaParams]:
    return {
        USER_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
        TEXT_KEY: text_index_params(local),
        SEQ_KEY: models.IntegerIndexParams(
            type=models.IntegerIndexType.INTEGER, lookup=True, range=True, enable_hnsw=False
        ),
        TS_KEY: models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=False),
        CATEGORY_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        MONTH_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        SPEAKER_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        "agent_id": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        "run_id": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
        EXPIRES_KEY: models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=False),
        # "not expired" is on every search: its `_mortal` test must be an index lookup, not a payload read.
        MORTAL_KEY: models.BoolIndexParams(type=models.BoolIndexType.BOOL),
        TENANT_KEY: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True, enable_hnsw=False),
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


def ensure_indexes(client: QdrantClient, local: bool, name: str, info: models.CollectionInfo) -> None:
    existing = info.payload_schema or {}
    for field_name, params in payload_indexes(local).items():
        present = existing.get(field_name)
        if present is not None and not _needs_rebuild(field_name, present):
            continue
        try:
            with warnings.catch_warnings():
                # local mode warns that payload indexes do nothing there; that is known and documented
                warnings.simplefilter("ignore", UserWarning)
                client.create_payload_index(name, field_name=field_name, field_schema=params, wait=True)
        except UnexpectedResponse as error:
            if not already_exists(error):
                raise
        if present is not None:
            logger.warning("payload index '%s' of '%s' rebuilt for BM25 scoring", field_name, name)


def _needs_rebuild(field_name: str, present: models.PayloadIndexInfo) -> bool:
    """Only a `data` index without BM25 scoring (e.g. made by another tool) breaks the keyword
    query, so only that one is replaced. Other differences, such as a `user_id` index that mem0's
    own adapter made without `is_tenant`, are left alone: comparing every parameter against what a
    server echoes back risks rebuilding an index on every worker start."""
    if field_name != TEXT_KEY:
        return False
    params = present.params
    return not (isinstance(params, models.TextIndexParams) and params.scoring)
