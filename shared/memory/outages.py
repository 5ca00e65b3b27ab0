"""A vector store that cannot answer is a 503 with `Retry-After`, never a 500: `vector_store_calls`
wraps every call into a store engine (the service, the chat agent, ingestion, the composition root).

A store that answers with a client error (a Qdrant server's 4xx: a request it does not understand,
a collection that is not there) is not an outage: waiting does not change it. It is reported as
`ConfigurationProblem` ("misconfigured"), naming the store's answer, so an operator sees that the
store and this service disagree (server version, collection layout) instead of "retry later"."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from shared.errors import BackendUnavailable, ConfigurationProblem, ServiceError

logger = logging.getLogger(__name__)

# Modules whose exceptions mean "the store could not answer", as opposed to a bug of ours.
_STORE_ERROR_MODULES = ("qdrant_client", "chromadb", "httpx", "httpcore", "urllib3", "requests", "grpc", "portalocker")
# Client errors that do mean "not now": a timeout and a rate limit.
_TRANSIENT_4XX = frozenset({408, 429})


def _is_store_outage(error: BaseException) -> bool:
    if isinstance(error, ServiceError):
        return False
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return any(type(e).__module__.startswith(_STORE_ERROR_MODULES) for e in _exception_chain(error))


def _store_refusal(error: BaseException) -> BaseException | None:
    """The Qdrant client error (`UnexpectedResponse`) carrying a lasting 4xx in `error`'s chain, if any."""
    for link in _exception_chain(error):
        status = getattr(link, "status_code", None)
        if (
            type(link).__module__.startswith("qdrant_client")
            and isinstance(status, int)
            and 400 <= status < 500
            and status not in _TRANSIENT_4XX
        ):
            return link
    return None


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _refusal_message(refusal: BaseException) -> str:
    status = getattr(refusal, "status_code", "?")
    content = getattr(refusal, "content", b"")
    body = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content or "")
    body = " ".join(body.split())[:300]
    return (
        f"the vector store refused a request of this service (HTTP {status}: {body or refusal}); the store and "
        "this service disagree (check the Qdrant server version, 1.19.0 or later, and the collection)"
    )


@contextmanager
def vector_store_calls() -> Iterator[None]:
    """Turns a vector store outage into a 503 instead of a 500, and a store's 4xx into `misconfigured`."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as error:
        refusal = _store_refusal(error)
        if refusal is not None:
            logger.error("vector store refused a request: %s: %s", type(refusal).__name__, refusal)
            raise ConfigurationProblem(_refusal_message(refusal)) from error
        if _is_store_outage(error):
            logger.warning("vector store unavailable: %s: %s", type(error).__name__, error)
            raise BackendUnavailable("vector_store", "the vector store is unavailable; retry later") from error
        raise
