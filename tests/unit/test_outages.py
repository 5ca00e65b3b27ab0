"""How a vector store's failures reach the caller (shared/memory/outages.py): an outage is a 503 to
retry, a store's lasting 4xx is "misconfigured" (the store and this service disagree)."""

from __future__ import annotations

import httpx
import pytest
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from shared.errors import BackendUnavailable, ConfigurationProblem
from shared.memory.outages import vector_store_calls

# What Qdrant 1.19 answered to the `TextQuery` it does not have.
TEXT_QUERY_400 = (
    b'{"status":{"error":"Format error in JSON body: "Expected some form of vector, id, or a type of query"}}'
)


def _response(status: int, content: bytes = b"{}") -> UnexpectedResponse:
    return UnexpectedResponse(status_code=status, reason_phrase="", content=content, headers=httpx.Headers())


def test_a_qdrant_400_is_misconfigured_not_unavailable() -> None:
    with pytest.raises(ConfigurationProblem) as caught, vector_store_calls():
        raise _response(400, TEXT_QUERY_400)
    error = caught.value
    assert error.code == "misconfigured" and error.status == 503
    assert "HTTP 400" in error.message and "Expected some form of vector" in error.message
    assert "retry later" not in error.message and "1.19.0" in error.message
    assert isinstance(error.__cause__, UnexpectedResponse)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_every_lasting_4xx_is_misconfigured(status: int) -> None:
    with pytest.raises(ConfigurationProblem), vector_store_calls():
        raise _response(status)


def _wrapped() -> None:
    try:
        raise _response(400)
    except UnexpectedResponse as error:
        raise RuntimeError("mem0 wrapped it") from error


def test_a_4xx_wrapped_by_another_error_is_found_in_the_chain() -> None:
    with pytest.raises(ConfigurationProblem), vector_store_calls():
        _wrapped()


@pytest.mark.parametrize(
    "error",
    [
        _response(500),
        _response(503),
        _response(408),  # a timeout
        _response(429),  # rate limited: retrying is the answer
        ResponseHandlingException(httpx.ConnectError("refused")),
        ConnectionError("reset"),
    ],
)
def test_outages_stay_retryable(error: Exception) -> None:
    with pytest.raises(BackendUnavailable) as caught, vector_store_calls():
        raise error
    assert caught.value.headers.get("Retry-After")


def test_our_own_bugs_stay_bugs() -> None:
    with pytest.raises(KeyError), vector_store_calls():
        raise KeyError("not the store")
