"""The one error module: domain exceptions and their HTTP status (the envelope is functions/envelope.py).

Everything a client can cause maps to a 4xx with a stable `error.code`; a backend outage maps to
503 with `Retry-After`. Anything else is a bug: it is logged with its traceback and answered with a
generic 500 that carries only the request id.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every error the API reports on purpose."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class ValidationFailed(ServiceError):
    status = 422
    code = "validation_error"


class Unauthenticated(ServiceError):
    """The caller is not identified: a header API Management sets (tenant, end user) is missing."""

    status = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class Throttled(ServiceError):
    status = 429
    code = "throttled"


class QuotaExceeded(Throttled):
    """The caller's tenant has spent its share of the model for now (TENANT_TOKEN_BUDGET): only its
    own calls that need the model are refused, until the window named by `Retry-After` ends."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: int, budget: int, window_seconds: int) -> None:
        super().__init__(
            message,
            details=[{"budget_tokens": budget, "window_seconds": window_seconds}],
            headers={"Retry-After": str(max(1, retry_after))},
        )
        self.retry_after = max(1, retry_after)


class BackendUnavailable(ServiceError):
    """A dependency (vector store, graph, LLM, storage) cannot serve the request right now."""

    status = 503
    code = "unavailable"

    def __init__(self, backend: str, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, details=[{"backend": backend}], headers={"Retry-After": str(retry_after)})
        self.backend = backend


# Every setting the llm_not_configured message names, in its order.
LLM_SETTINGS = (
    "LLM_PROVIDER",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
)


class LlmNotConfigured(ServiceError):
    """Chat needs an LLM and none is configured: a deployment fact, not an outage."""

    status = 503
    code = "llm_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "Chat needs a language model and none is configured. Set LLM_PROVIDER=azure_openai with "
            "AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT (AZURE_OPENAI_API_KEY, or Entra ID when unset), "
            "or LLM_PROVIDER=openai with OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL. "
            "The memory API works without one.",
            details=[{"settings": list(LLM_SETTINGS)}],
        )  # no Retry-After: a configuration fact that waiting does not change


class ConfigurationProblem(ServiceError):
    """The service is misconfigured (wrong model path, dimension mismatch...): 503 until fixed."""

    status = 503
    code = "misconfigured"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "60"})


class StoreLocked(ServiceError):
    """The embedded store's folder is held by another process: not an outage that a retry ends."""

    status = 503
    code = "store_locked"

    def __init__(self, message: str) -> None:
        super().__init__(message)  # no Retry-After: waiting does not help, the other process must stop
