"""Spans around the vector-store port and the embedder, put on by the composition root (shared/runtime.py).

One wrapper per port instead of edits in each adapter: every engine (Qdrant Edge, Qdrant server,
Chroma) is traced the same way, and an adapter's own code knows nothing of telemetry. Anything the
wrappers do not name (mem0's `config`, `client`, `keyword_search`, an adapter's extras, ...) passes
through to the wrapped object untouched.

Attributes are the operation, the store kind and how many items went in and came out; never texts,
vectors, filters or payloads.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from shared.observability import meters
from shared.observability.tracing import dependency_span, is_enabled

# The engines by the name Application Insights shows as the dependency type (`db.system`).
_DB_SYSTEM = {"edge": "qdrant-edge", "qdrant": "qdrant", "chroma": "chroma"}


def _count(result: Any) -> int | None:
    if result is None:
        return 0
    items = getattr(result, "items", None)  # Candidates
    if isinstance(items, builtins.list):
        return len(items)
    if isinstance(result, builtins.list | dict | tuple):
        if result and isinstance(result, builtins.list) and isinstance(result[0], builtins.list):
            return len(result[0])  # mem0's `list` answers [[hits], ...]
        return len(result)
    if isinstance(result, int):
        return result
    return 1


class TracedVectorStore:
    """The `VectorStore` port with a span around each call into the engine."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.kind: str = inner.kind
        self._system = _DB_SYSTEM.get(self.kind, self.kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def inner(self) -> Any:
        """The adapter itself (tests and tools that need the engine's own objects)."""
        return self._inner

    def _call(self, operation: str, call: Any, *args: Any, sent: int | None = None, **kwargs: Any) -> Any:
        if not is_enabled():
            return call(*args, **kwargs)
        attributes = {
            "db.system": self._system,
            "db.operation": operation,
            "memory_layer.store.kind": self.kind,
            "memory_layer.items_sent": sent,
        }
        # A CLIENT span even for the embedded engine: Application Insights then lists the store as a
        # dependency of its own type (`db.system`) rather than as "InProc".
        with dependency_span(f"{self._system} {operation}", attributes) as span:
            result = call(*args, **kwargs)
            span.set_attribute("memory_layer.result_count", _count(result))
            return result

    # --- mem0's interface --------------------------------------------------------------------
    def insert(self, vectors: list[Any], payloads: Any = None, ids: Any = None) -> None:
        self._call("insert", self._inner.insert, vectors, payloads, ids, sent=len(vectors))

    def search(self, query: str, vectors: Sequence[float], top_k: int = 5, filters: Any = None) -> Any:
        return self._call("search", self._inner.search, query, vectors, top_k, filters)

    def get(self, vector_id: str) -> Any:
        return self._call("get", self._inner.get, vector_id)

    def update(self, vector_id: str, vector: Any = None, payload: Any = None) -> None:
        self._call("update", self._inner.update, vector_id, vector, payload, sent=1)

    def delete(self, vector_id: str, user_id: str | None = None) -> None:
        self._call("delete", self._inner.delete, vector_id, user_id, sent=1)

    def list(self, filters: Any = None, top_k: int | None = None) -> Any:
        return self._call("list", self._inner.list, filters, top_k)

    # --- the port's own calls ----------------------------------------------------------------
    def candidates(self, user_id: str, vector: Any, text: str, limit: int, filters: Any, hints: Any = None) -> Any:
        return self._call("candidates", self._inner.candidates, user_id, vector, text, limit, filters, hints)

    def neighbours(self, user_id: str, seqs: Sequence[int], vector: Any, text: str = "", validity: Any = None) -> Any:
        return self._call("neighbours", self._inner.neighbours, user_id, seqs, vector, text, validity, sent=len(seqs))

    def fetch(self, ids: Sequence[str]) -> Any:
        return self._call("fetch", self._inner.fetch, ids, sent=len(ids))

    def list_user(self, user_id: str, limit: int | None = None, filters: Any = None, *, expired: bool = False) -> Any:
        return self._call("list_user", self._inner.list_user, user_id, limit, filters, expired=expired)

    def expired_points(self, now: float, limit: int) -> Any:
        return self._call("expired_points", self._inner.expired_points, now, limit)

    def count_user(self, user_id: str) -> Any:
        return self._call("count_user", self._inner.count_user, user_id)

    def page_user(self, user_id: str, limit: int, before: Any = None, filters: Any = None) -> Any:
        return self._call("page_user", self._inner.page_user, user_id, limit, before, filters)

    def tally_user(self, user_id: str) -> Any:
        return self._call("tally_user", self._inner.tally_user, user_id)

    def ping(self) -> Any:
        return self._call("ping", self._inner.ping)

    def close(self) -> None:
        self._inner.close()


class TracedEmbedder:
    """An embedder with a span (batch size, model) and the batch-size metric around each call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.dims: int = inner.dims
        self._model = str(getattr(inner, "model_name", None) or getattr(inner, "model", "") or "")
        # The local model (fastembed on ONNX Runtime) has `model_name`; the OpenAI embedder `model`.
        self._system = "fastembed" if hasattr(inner, "model_name") else "openai"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def inner(self) -> Any:
        return self._inner

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        return self.embed_batch([text], memory_action)[0]

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]:
        meters.batch_size(len(texts), "embed")
        if not is_enabled():
            vectors: list[list[float]] = self._inner.embed_batch(texts, memory_action)
            return vectors
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": self._model,
            "memory_layer.batch_size": len(texts),
            "memory_layer.embedding.purpose": memory_action or "",
            "gen_ai.system": self._system,
        }
        with dependency_span(f"embeddings {self._model}", attributes):
            vectors = self._inner.embed_batch(texts, memory_action)
            return vectors
