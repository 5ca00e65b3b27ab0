"""Fair use of the model per tenant, through two dev hosts (two workers) sharing one token ledger in
Table Storage (Azurite), with embeddings and chat from the fake OpenAI server over HTTP.

One tenant that spends its budget with batch-adds gets 429 `quota_exceeded` with `Retry-After` on
every worker, before anything reaches the model, for its writes and its chat; its searches and
every other tenant's writes and searches go on. A batch whose embedding input is over the
per-call cap is 413 for anyone, and costs nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import DevHost
from tools.harness.azurite import AzuriteServer
from tools.harness.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.e2e

TENANT = "x-memory-tenant"
WINDOW = 86_400  # one budget window for the whole test (see `_not_near_a_window_end`)
BUDGET = 600
CAP = 2_000


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory, azurite: AzuriteServer, model: FakeOpenAIServer
) -> Iterator[tuple[DevHost, DevHost]]:
    env = {
        "TENANT_HEADER": TENANT,
        "STATE_STORE": "azure_table",
        "AZURE_TABLES_CONNECTION_STRING": azurite.connection_string,
        "SESSIONS_TABLE": f"sessions{uuid.uuid4().hex[:8]}",
        "HISTORY_TABLE": f"history{uuid.uuid4().hex[:8]}",
        "EVENTS_TABLE": f"events{uuid.uuid4().hex[:8]}",
        "USAGE_TABLE": f"usage{uuid.uuid4().hex[:8]}",
        "INGEST_MODE": "inline",
        "EMBEDDING_PROVIDER": "openai",
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "sk-test",
        "LLM_MAX_RETRIES": "0",
        "TENANT_TOKEN_BUDGET": str(BUDGET),
        "TENANT_TOKEN_WINDOW_SECONDS": str(WINDOW),
        "MAX_EMBEDDING_TOKENS_PER_REQUEST": str(CAP),
    }
    root = tmp_path_factory.mktemp("quota")
    first = DevHost(root / "w1", env, name="quota-worker1").start()
    second = DevHost(root / "w2", env, name="quota-worker2").start()
    yield first, second
    first.stop()
    second.stop()


def _post(host: DevHost, tenant: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return host.client.post(path, json=body, headers={TENANT: tenant})


def _batch(tenant_user: str, topic: str, items: int = 5) -> dict[str, Any]:
    # 40 words of 7-8 characters: about 80 tokens by the service's estimate, 40 by the fake's count.
    memories = [{"content": " ".join(f"{topic}{i}w{k:02d}" for k in range(40))} for i in range(items)]
    return {"user_id": tenant_user, "memories": memories}


def _not_near_a_window_end() -> None:
    left = WINDOW - time.time() % WINDOW
    if left < 120:  # the budget starts again at the window's end: wait for the next one
        time.sleep(left + 1)


def test_a_tenant_over_its_budget_gets_429_while_others_go_on(
    workers: tuple[DevHost, DevHost], model: FakeOpenAIServer
) -> None:
    _not_near_a_window_end()
    one, two = workers
    admitted, refused = 0, None
    for _ in range(10):
        response = _post(one, "acme", "/api/memory/batch-add", _batch("ann", "acme"))
        if response.status_code == 429:
            refused = response
            break
        assert response.status_code == 200, response.text
        admitted += 1
    assert refused is not None and admitted >= 1, "the budget was never reached"
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and error["details"] == [
        {"budget_tokens": BUDGET, "window_seconds": WINDOW}
    ]
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW

    # The other worker counts the same budget; the refusal sends nothing to the model.
    sent = len(model.embedding_requests())
    again = _post(two, "acme", "/api/memory/batch-add", _batch("ann", "acme"))
    assert again.status_code == 429 and again.json()["error"]["code"] == "quota_exceeded"
    assert len(model.embedding_requests()) == sent
    # A chat turn is refused too, at the first of its model calls that does not fit (here the
    # learning's extraction, whose prompt is long), and leaves nothing behind (inline: all or nothing).
    chat = _post(two, "acme", "/api/chat/message", {"user_id": "ann", "message": "what do I like?"})
    assert chat.status_code == 429 and chat.json()["error"]["code"] == "quota_exceeded", chat.text
    assert int(chat.headers["Retry-After"]) >= 1

    # The tenant over its budget still searches (a query is not billed).
    found = _post(one, "acme", "/api/memory/search", {"user_id": "ann", "query": "acme0w05", "limit": 3})
    assert found.status_code == 200, found.text
    assert found.json()["data"]["results"], "acme's own memories are still found"

    # Another tenant writes and searches on either worker.
    for host in (one, two):
        added = _post(host, "globex", "/api/memory/batch-add", _batch("bob", "globex", items=2))
        assert added.status_code == 200, added.text
        hits = _post(host, "globex", "/api/memory/search", {"user_id": "bob", "query": "globex1w07", "limit": 3})
        assert hits.status_code == 200 and hits.json()["data"]["results"], hits.text


def test_a_batch_over_the_per_call_cap_is_413_and_costs_nothing(
    workers: tuple[DevHost, DevHost], model: FakeOpenAIServer
) -> None:
    one, _ = workers
    sent = len(model.embedding_requests())
    too_big = _post(one, "initech", "/api/memory/batch-add", _batch("cy", "initech", items=30))  # ~2,400 tokens
    assert too_big.status_code == 413, too_big.text
    error = too_big.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"][0]["setting"] == "MAX_EMBEDDING_TOKENS_PER_REQUEST" and error["details"][0]["limit"] == CAP
    assert len(model.embedding_requests()) == sent
    fits = _post(one, "initech", "/api/memory/batch-add", _batch("cy", "initech", items=5))
    assert fits.status_code == 200, fits.text  # nothing of the refused batch was charged
