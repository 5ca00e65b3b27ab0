"""A vector store that cannot answer is a 503 with `Retry-After`, never a 500: `vector_store_calls`
wraps every call into a store engine (the service, the chat agent, ingestion, the composition root)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from shared.errors import BackendUnavailable, ServiceError

logger = logging.getLogger(__name__)

# Modules whose exceptions mean "the store could not answer", as opposed to a bug of ours.
_STORE_ERROR_MODULES = ("qdrant_client", "chromadb", "httpx", "httpcore", "urllib3", "requests", "grpc", "portalocker")


def _is_store_outage(error: BaseException) -> bool:
    if isinstance(error, ServiceError):
        return False
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return any(type(e).__module__.startswith(_STORE_ERROR_MODULES) for e in _exception_chain(error))


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextmanager
def vector_store_calls() -> Iterator[None]:
    """Turns a vector store outage into a 503 instead of a 500."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as error:
        if _is_store_outage(error):
            logger.warning("vector store unavailable: %s: %s", type(error).__name__, error)
            raise BackendUnavailable("vector_store", "the vector store is unavailable; retry later") from error
        raise
