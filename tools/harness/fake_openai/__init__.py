"""A fake OpenAI / Azure OpenAI service over real HTTP, for tests that run the real `openai` SDK.

Going through a socket (not an httpx mock) means the SDK's own URL building, auth headers,
retries, timeouts and response parsing are all exercised exactly as in production.

    with FakeOpenAIServer() as server:
        OpenAI(base_url=server.base_url, api_key="k")
        AzureOpenAI(azure_endpoint=server.url, api_key="k", api_version="2024-10-21")

Routes: OpenAI `/v1/{chat/completions,embeddings}`; Azure `/openai/deployments/{name}/...` (needs
`api-version`) and the newer `/openai/v1/...`.
"""

from tools.harness.fake_openai.credential import StaticTokenCredential
from tools.harness.fake_openai.recording import Headers, RecordedRequest
from tools.harness.fake_openai.replies import (
    DEFAULT_DIMS,
    Reply,
    Responder,
    cosine,
    default_chat_responder,
    embed,
    json_mode,
    last_user_message,
    message_text,
    tokens,
)
from tools.harness.fake_openai.server import CREATED, FakeOpenAIServer

__all__ = [
    "CREATED",
    "DEFAULT_DIMS",
    "FakeOpenAIServer",
    "Headers",
    "RecordedRequest",
    "Reply",
    "Responder",
    "StaticTokenCredential",
    "cosine",
    "default_chat_responder",
    "embed",
    "json_mode",
    "last_user_message",
    "message_text",
    "tokens",
]
