"""Clients for Azure OpenAI (key or Entra ID) and OpenAI-compatible endpoints, with bounded retries.

The SDK's own retries are turned off so that one policy applies everywhere: throttling (429),
server errors (5xx), timeouts and connection failures are retried with capped exponential backoff
that honours a short `Retry-After`; when the budget is spent the caller gets `BackendUnavailable`
(503 with `Retry-After`), never a hanging request or a 500.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from shared.ai.quota import TokenMeter, estimate_messages, reported_tokens
from shared.credentials import azure_credential
from shared.errors import BackendUnavailable, ConfigurationProblem, LlmNotConfigured
from shared.lazy import Lazy
from shared.observability import meters
from shared.observability.tracing import current_span, dependency_span
from shared.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
_MAX_SINGLE_WAIT_SECONDS = 8.0
_BASE_WAIT_SECONDS = 0.5


class OpenAIClientFactory:
    """Builds the SDK client once per worker; the Entra ID token is refreshed by the SDK per call."""

    def __init__(self, settings: Settings, provider: str, meter: TokenMeter | None = None) -> None:
        self.settings = settings
        self.provider = provider
        self.max_retries = settings.llm_max_retries
        # The caps and the tenant's budget, before each call (shared/ai/quota.py); without a meter, the caps only.
        self.meter = meter if meter is not None else TokenMeter(settings)
        self._client: Lazy[Any] = Lazy(self._build)

    def client(self) -> Any:
        return self._client.get()

    def _build(self) -> Any:
        import openai

        s = self.settings
        timeout = s.llm_timeout_seconds
        if self.provider == "azure_openai":
            if s.azure_openai_api_key:
                return openai.AzureOpenAI(
                    azure_endpoint=s.azure_openai_endpoint or "",
                    api_key=s.azure_openai_api_key,
                    api_version=s.azure_openai_api_version,
                    timeout=timeout,
                    max_retries=0,
                )
            from azure.identity import get_bearer_token_provider

            token_provider = get_bearer_token_provider(azure_credential(s), COGNITIVE_SERVICES_SCOPE)
            return openai.AzureOpenAI(
                azure_endpoint=s.azure_openai_endpoint or "",
                azure_ad_token_provider=token_provider,
                api_version=s.azure_openai_api_version,
                timeout=timeout,
                max_retries=0,
            )
        if self.provider == "openai":
            # Ollama and vLLM accept any key; the SDK refuses to start without one.
            return openai.OpenAI(
                base_url=s.openai_base_url,
                api_key=s.openai_api_key or "not-needed",
                timeout=timeout,
                max_retries=0,
            )
        raise ConfigurationProblem(f"unknown OpenAI provider {self.provider!r}")


def _retry_after_seconds(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    if response is None:
        return None
    for header in ("retry-after-ms", "retry-after"):
        raw = response.headers.get(header)
        if raw:
            try:
                value = float(raw)
            except ValueError:
                return None
            return value / 1000 if header.endswith("ms") else value
    return None


def _is_transient(error: Exception) -> bool:
    import openai

    if isinstance(error, openai.APIConnectionError | openai.APITimeoutError):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return False


def call_with_retries(what: str, call: Callable[[], T], max_retries: int, *, model: str = "") -> T:
    """Run one LLM/embedding call under the service's retry policy.

    The current span (the caller's LLM or embedder span) gets the retry count and the token usage
    the answer reports; the usage and every 429 are also metrics (dimensions: model, operation).
    """
    import openai

    attempt = 0
    span = current_span()
    while True:
        try:
            result = call()
        except openai.APIError as error:
            if isinstance(error, openai.RateLimitError):
                meters.llm_throttled(model, what)
            if not _is_transient(error):
                if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
                    raise BackendUnavailable("llm", f"the {what} endpoint refused our credentials") from error
                if isinstance(error, openai.NotFoundError):
                    raise ConfigurationProblem(f"the {what} deployment or model was not found") from error
                raise BackendUnavailable("llm", f"the {what} call was rejected: {error.__class__.__name__}") from error
            hinted = _retry_after_seconds(error)
            if attempt >= max_retries:
                retry_after = max(1, round(hinted)) if hinted else 5
                logger.warning("%s call failed after %d attempts: %s", what, attempt + 1, error)
                raise BackendUnavailable(
                    "llm", f"the {what} service is unavailable or throttled; retry later", retry_after=retry_after
                ) from error
            backoff = _BASE_WAIT_SECONDS * (2**attempt) * (0.75 + random.random() / 2)
            wait = min(hinted if hinted is not None else backoff, _MAX_SINGLE_WAIT_SECONDS)
            logger.info("%s call transient failure (%s); retry %d in %.2fs", what, error, attempt + 1, wait)
            time.sleep(wait)
            attempt += 1
            span.set_attribute("memory_layer.retries", attempt)
            continue
        _record_usage(span, model, what, getattr(result, "usage", None))
        return result


def _record_usage(span: Any, model: str, what: str, usage: Any) -> None:
    if usage is None:
        return
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    meters.llm_usage(model, what, prompt, completion)
    if prompt is not None:
        span.set_attribute("gen_ai.usage.input_tokens", prompt)
    if completion is not None:
        span.set_attribute("gen_ai.usage.output_tokens", completion)


class ChatModel:
    """The chat LLM: plain answers for the agent, JSON answers for extraction (mem0 and the graph)."""

    def __init__(self, clients: OpenAIClientFactory, model: str, temperature: float) -> None:
        self._clients = clients
        self.model = model
        self.temperature = temperature
        # mem0 reads `config.enable_vision` etc. from its LLM; this view answers those reads.
        self.config = _LlmConfigView()

    def complete(self, messages: list[dict[str, str]], *, json_mode: bool = False) -> str:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        if not _is_reasoning_model(self.model):
            kwargs["temperature"] = self.temperature
        charge = self._clients.meter.admit("chat", estimate_messages(messages))
        attributes = {
            "gen_ai.system": "az.ai.openai" if self._clients.provider == "azure_openai" else "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            "memory_layer.llm.json_mode": json_mode,
            "memory_layer.llm.messages": len(messages),
        }
        with charge, dependency_span(f"chat {self.model}", attributes) as span:
            response = call_with_retries(
                "chat",
                lambda: self._clients.client().chat.completions.create(**kwargs),
                self._clients.max_retries,
                model=self.model,
            )
            span.set_attribute("gen_ai.response.model", str(getattr(response, "model", "") or ""))
            charge.settle(reported_tokens(response))
        content = response.choices[0].message.content if response.choices else None
        return content or ""

    def generate_response(
        self,
        messages: list[dict[str, str]],
        response_format: Any = None,
        tools: Any = None,
        tool_choice: str = "auto",
        **_: Any,
    ) -> str:
        """mem0's LLM interface: extraction asks for a JSON object."""
        json_mode = isinstance(response_format, dict) and response_format.get("type") == "json_object"
        return self.complete(messages, json_mode=json_mode)


class NoChatModel:
    """Stands in for the LLM when none is configured, so mem0 can be built and chat can say why it can't."""

    config: Any = None

    def __init__(self) -> None:
        self.config = _LlmConfigView()

    def complete(self, messages: list[dict[str, str]], *, json_mode: bool = False) -> str:
        raise LlmNotConfigured()

    def generate_response(self, messages: list[dict[str, str]], response_format: Any = None, **_: Any) -> str:
        raise LlmNotConfigured()


def _is_reasoning_model(model: str) -> bool:
    # o-series deployments (the seed uses o4-mini) reject a custom temperature.
    name = model.lower()
    return name.startswith(("o1", "o3", "o4", "gpt-5"))


class _LlmConfigView:
    enable_vision = False
    vision_details = "auto"

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def build_chat_model(settings: Settings, meter: TokenMeter | None = None) -> ChatModel | NoChatModel:
    if settings.llm_provider == "none":
        return NoChatModel()
    clients = OpenAIClientFactory(settings, settings.llm_provider, meter)
    if settings.llm_provider == "azure_openai":
        return ChatModel(clients, settings.azure_openai_deployment or "", settings.llm_temperature)
    return ChatModel(clients, settings.openai_model, settings.llm_temperature)
