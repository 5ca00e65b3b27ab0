"""The real `openai` clients against the fake server over HTTP: Azure with a key, Azure with Entra
ID, OpenAI-compatible; retries on throttling; 503 when the LLM stays down."""

from __future__ import annotations

import pytest

from shared import credentials
from shared.ai import llm
from shared.ai.embeddings import OpenAIEmbedder
from shared.errors import BackendUnavailable
from shared.settings import Settings
from tools.harness.fake_openai import FakeOpenAIServer, StaticTokenCredential


def azure_settings(server: FakeOpenAIServer, **extra: object) -> Settings:
    values: dict[str, object] = {
        "llm_provider": "azure_openai",
        "embedding_provider": "azure_openai",
        "azure_openai_endpoint": server.url,
        "azure_openai_deployment": "chat-deploy",
        "azure_embedding_deployment": "embed-deploy",
        "azure_openai_api_version": "2024-10-21",
        "llm_max_retries": 2,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def test_azure_with_key_sends_api_key_to_the_deployment_path(fake_openai: FakeOpenAIServer) -> None:
    settings = azure_settings(fake_openai, azure_openai_api_key="secret-key")
    model = llm.build_chat_model(settings)
    assert model.complete([{"role": "user", "content": "hello"}]) == "ACK: hello"
    request = fake_openai.chat_requests()[-1]
    assert request.path == "/openai/deployments/chat-deploy/chat/completions"
    assert request.query["api-version"] == "2024-10-21"
    assert request.headers["api-key"] == "secret-key"
    assert "authorization" not in {k.lower() for k in request.headers}


def test_azure_without_key_uses_an_entra_id_bearer_token(
    fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = StaticTokenCredential("entra-token-123")
    monkeypatch.setattr(credentials, "credential_override", credential)
    settings = azure_settings(fake_openai)
    model = llm.build_chat_model(settings)
    assert model.complete([{"role": "user", "content": "hi"}], json_mode=False) == "ACK: hi"
    request = fake_openai.chat_requests()[-1]
    assert request.headers["authorization"] == "Bearer entra-token-123"
    assert "api-key" not in {k.lower() for k in request.headers}
    assert ("https://cognitiveservices.azure.com/.default",) in credential.scopes


def test_azure_embeddings_batch_in_one_call(fake_openai: FakeOpenAIServer) -> None:
    settings = azure_settings(fake_openai, azure_openai_api_key="k", embedding_dims=1536)
    clients = llm.OpenAIClientFactory(settings, "azure_openai")
    embedder = OpenAIEmbedder(clients, "embed-deploy", 1536, send_dimensions=True)
    vectors = embedder.embed_batch(["one", "two", "three"])
    assert len(vectors) == 3 and all(len(v) == 1536 for v in vectors)
    (request,) = fake_openai.embedding_requests()
    assert request.path == "/openai/deployments/embed-deploy/embeddings"
    assert request.json["input"] == ["one", "two", "three"]


def test_openai_compatible_endpoint_json_mode(fake_openai: FakeOpenAIServer) -> None:
    settings = Settings(
        llm_provider="openai", openai_base_url=fake_openai.base_url, openai_api_key="sk-test", openai_model="llama3"
    )
    model = llm.build_chat_model(settings)
    assert model.complete([{"role": "user", "content": "x"}], json_mode=True) == '{"memory": []}'
    request = fake_openai.chat_requests()[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json["response_format"] == {"type": "json_object"}
    assert request.json["model"] == "llama3"


def test_throttling_is_retried_then_succeeds(fake_openai: FakeOpenAIServer) -> None:
    model = llm.build_chat_model(azure_settings(fake_openai, azure_openai_api_key="k"))
    fake_openai.fail_next(2, status=429, retry_after="0.05")
    assert model.complete([{"role": "user", "content": "again"}]) == "ACK: again"
    statuses = [r.status for r in fake_openai.chat_requests()]
    assert statuses == [429, 429, 200]


def test_an_llm_that_stays_down_is_a_503_with_retry_after(fake_openai: FakeOpenAIServer) -> None:
    model = llm.build_chat_model(azure_settings(fake_openai, azure_openai_api_key="k", llm_max_retries=1))
    fake_openai.down()
    with pytest.raises(BackendUnavailable) as raised:
        model.complete([{"role": "user", "content": "anyone?"}])
    assert raised.value.status == 503
    assert int(raised.value.headers["Retry-After"]) >= 1
    assert len(fake_openai.chat_requests()) == 2  # first try + one retry, then give up


def test_reasoning_deployments_get_no_temperature(fake_openai: FakeOpenAIServer) -> None:
    settings = azure_settings(fake_openai, azure_openai_api_key="k", azure_openai_deployment="o4-mini")
    llm.build_chat_model(settings).complete([{"role": "user", "content": "q"}])
    assert "temperature" not in fake_openai.chat_requests()[-1].json
