"""qdrant-client without fastembed.

qdrant-client imports fastembed when it is installed: once when the package is imported
(`qdrant_client.fastembed_common`) and again in every client's constructor
(`FastEmbedMisc.is_installed`), for its own embed-the-text conveniences, which this service never
uses (the embeddings come from the service's embedder). That brings onnxruntime, Pillow and the
Hugging Face hub client into a worker that embeds through Azure OpenAI: measured 37 MB of resident
memory (147 -> 110 MB for a worker configured as in the cloud, after building the service) and
their import time on every cold start. fastembed is installed for local embedding models named
without a path (`shared/ai/embeddings.py`), so it stays importable for that use: it is hidden only
while qdrant-client is imported and while a client is built, and qdrant-client takes it as absent.

Import `load_qdrant_client()` before anything else imports `qdrant_client` (this package's
`__init__` does, and so does the mem0 builder, whose placeholder store is a Qdrant client).
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_hiding = threading.Lock()


def _without_fastembed(make: Callable[[], T]) -> T:
    with _hiding:
        if "fastembed" in sys.modules:  # imported already (or hidden by an outer call): nothing to save
            return make()
        sys.modules["fastembed"] = None  # type: ignore[assignment]  # `import fastembed` raises ImportError
        try:
            return make()
        finally:
            if "fastembed" in sys.modules and sys.modules["fastembed"] is None:
                del sys.modules["fastembed"]


def load_qdrant_client() -> None:
    """Imports qdrant-client (once) with fastembed hidden."""
    if "qdrant_client" not in sys.modules:
        _without_fastembed(lambda: importlib.import_module("qdrant_client"))


# What a client of a Qdrant server asks for: uncompressed answers, over kept-alive connections.
#
# The server compresses an answer when asked (httpx asks for gzip by default) and then writes the
# headers and the compressed body apart, so on a kept-alive connection the body waits for the
# client's delayed ACK: 40 ms on every search call. Measured against Qdrant 1.19.0 with a worker
# configured as in the cloud (1,536 dimensions, 10 results): a search p50 of 64 ms with the client's
# defaults against a server at another address, 19 ms uncompressed, and 10.9-11.7 ms of worker CPU
# per search instead of 13.1-13.8 (no gzip to undo). qdrant-client turns keep-alive off for a server
# on localhost because of those very delays; uncompressed, they do not happen there either, so every
# server gets kept-alive connections (the answers are a few tens of KB on the data centre's network).
REST_HEADERS = {"Accept-Encoding": "identity"}


def qdrant_client(**kwargs: Any) -> Any:
    """`QdrantClient(**kwargs)`, built with fastembed hidden; for a server (`url` or `host`), REST
    with `REST_HEADERS` over kept-alive connections, without the client's own version check, unless
    the caller says otherwise."""
    load_qdrant_client()
    import httpx
    from qdrant_client import QdrantClient

    if kwargs.get("url") or kwargs.get("host"):
        kwargs.setdefault("metadata", dict(REST_HEADERS))  # REST headers only (`headers` goes to gRPC too)
        kwargs.setdefault("limits", httpx.Limits(max_connections=100, max_keepalive_connections=20))
        # The store checks the server's version itself and refuses one too old (schema.py); the
        # client's own check is a second `GET /` on a thread and a connection of its own.
        kwargs.setdefault("check_compatibility", False)
    return _without_fastembed(lambda: QdrantClient(**kwargs))


def query_batch(client: Any, collection_name: str, requests: list[Any]) -> list[Any]:
    """`client.query_batch_points` without the copy the client makes of every request.

    `QdrantClient.query_batch_points` deep-copies each request to resolve its query (a bare vector
    becomes `NearestQuery`) and then walks it for documents or images to embed, which this service
    never sends. For a 1,536-dimension query in a candidates batch (the vector in each prefetch and
    request) that copy was 117,894 `deepcopy` calls, about 24 ms of a worker's CPU per search
    against a Qdrant server (cProfile, `python -m tools.bench load --store qdrant --embeddings
    fake-openai --profile`). The requests are built here, for this call only: their bare vectors
    are wrapped in place and the batch goes to the client's transport (REST, gRPC or local mode).
    """
    from qdrant_client import models

    for request in requests:
        if isinstance(request.query, list | models.SparseVector):
            request.query = models.NearestQuery(nearest=request.query)
    transport = getattr(client, "_client", None)
    if transport is None:  # not a QdrantClient: whatever it is answers the public call
        return list(client.query_batch_points(collection_name, requests=requests))
    return list(transport.query_batch_points(collection_name=collection_name, requests=requests))
