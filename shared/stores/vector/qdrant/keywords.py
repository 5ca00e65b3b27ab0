"""BM25 as sparse vectors: the worker analyses the text, the engine keeps the statistics.

A Qdrant server (1.19) has no full-text query (`TextQuery`), so the keyword side is a named sparse
vector with the IDF modifier: each memory carries its words' BM25 term-frequency weights
(`embed_document`), a query carries weight 1 per word (`embed_query`), and the engine multiplies
each query word by its idf when it scores, over the corpus the request names (the user's own
memories, see `store.QdrantServerStore._idf`). Score = sum over the query words a memory holds of
idf(word) * tf weight(word, memory): BM25.

The text analysis is the embedded engine's (`edge/analysis.py`), computed in the worker by
`qdrant_edge.Bm25`: the Multilingual tokenizer (Chinese and Japanese segmented into words),
lowercase, English Snowball stemming, English stop words plus the extra ones (`analysis()`). Words are hashed
to sparse indices, so no vocabulary is kept anywhere.

The one figure a sparse vector fixes at write time is the average document length of BM25's
length normalisation (a text index measures it). `AVG_LEN` is the mean number of indexed words of
a LoCoMo turn (14.2 over 3,435 turns with this analysis); mem0's extracted facts are as short.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from qdrant_client import models

from shared.stores.vector.edge.analysis import analysis

SPARSE_KEY = "data_bm25"  # the named sparse vector (mem0's own layout names its fastembed one "bm25")
AVG_LEN = 14.0
K1 = 1.2
B = 0.75
# A query's words beyond this many are not searched (each costs one request in the keyword ceiling).
MAX_QUERY_TERMS = 16

_local = threading.local()


@functools.cache
def _config() -> Any:
    from qdrant_edge import Bm25Config

    return Bm25Config(k=K1, b=B, avg_len=AVG_LEN, language="english", **analysis())


def _model() -> Any:
    """One model per thread (cheap to build; no assumption about sharing the native object)."""
    model = getattr(_local, "model", None)
    if model is None:
        from qdrant_edge import Bm25

        model = _local.model = Bm25(_config())
    return model


def _sparse(vector: Any) -> models.SparseVector:
    return models.SparseVector(indices=[int(i) for i in vector.indices], values=[float(v) for v in vector.values])


def document_vector(text: Any) -> models.SparseVector | None:
    """A memory's BM25 weights, or None when its text holds no indexed word (nothing is stored)."""
    if not isinstance(text, str) or not text.strip():
        return None
    vector = _sparse(_model().embed_document(text))
    return vector if vector.indices else None


def query_vector(text: str) -> models.SparseVector | None:
    """A query's words (weight 1 each, at most MAX_QUERY_TERMS), or None when it has none."""
    if not text.strip():
        return None
    vector = _sparse(_model().embed_query(text))
    if not vector.indices:
        return None
    return models.SparseVector(indices=vector.indices[:MAX_QUERY_TERMS], values=vector.values[:MAX_QUERY_TERMS])


def term_vectors(query: models.SparseVector) -> list[models.SparseVector]:
    """Each word of a query vector alone."""
    return [models.SparseVector(indices=[i], values=[v]) for i, v in zip(query.indices, query.values, strict=True)]


def sparse_params() -> models.SparseVectorParams:
    """The sparse vector's configuration: the engine applies the idf at query time."""
    return models.SparseVectorParams(modifier=models.Modifier.IDF)
