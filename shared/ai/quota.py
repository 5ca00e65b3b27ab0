"""Fair use of the model: a token budget per tenant, and a cap on the tokens of one call.

Every tenant shares the Azure OpenAI deployments (tokens per minute each). API Management limits
calls, whatever a call costs, so one tenant's large batch-adds or long chats could keep the shared
deployment at 429 and every other tenant's requests at 503. Here the app counts what each tenant
spends and refuses that tenant alone, with 429 and `Retry-After`, once it has spent its share:

- Before a call to a remote model (OpenAI or Azure OpenAI; the local embedder costs the deployment
  nothing) its tokens are estimated (`estimate_tokens`: ASCII text at 4 characters a token, any
  other character one token, a deliberate overestimate for Chinese and accented text). A call over
  its cap is 413 (MAX_EMBEDDING_TOKENS_PER_REQUEST, MAX_PROMPT_TOKENS), for any caller.
- Within a call made for a tenant (`bills_scope` marks the service methods that spend tokens for
  a caller: writes, updates, a chat turn and its learning), the estimate is reserved in the
  tenant's window (TENANT_TOKEN_BUDGET per TENANT_TOKEN_WINDOW_SECONDS) in the ledger every worker
  shares (shared/stores/state/usage.py); once the model answers, the reservation is corrected to the
  usage it reports (a chat's answer tokens included). A reservation that would pass the budget is
  refused: `QuotaExceeded`, 429, `Retry-After` = the seconds left in the window.
- A search is not billed: its one query embedding is a few dozen tokens (a query is capped by the
  contract), API Management's per-subscription call limit already bounds how many, and it is the
  read path a tenant's users depend on while a batch job has spent the budget. It skips the
  ledger round trip too, so a search costs no more than before.
- If the ledger cannot be reached, the call goes on (fail open, logged): the budget shares the
  model fairly; it must not turn a storage outage into a model outage.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, ParamSpec, TypeVar

from shared.errors import BackendUnavailable, PayloadTooLarge, QuotaExceeded
from shared.scope import Scope
from shared.settings import Settings
from shared.stores.state.usage import LedgerBusy as LedgerBusy
from shared.stores.state.usage import TokenLedger as TokenLedger

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

Kind = Literal["embeddings", "chat"]

# The tenant whose budget the model calls of this call are charged to (None: nobody's).
billed_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("billed_tenant", default=None)

# What a chat message costs beside its text (role, separators), and a prompt beside its messages.
_PER_MESSAGE = 4
_PER_PROMPT = 3


def bills_scope(method: Callable[P, R]) -> Callable[P, R]:
    """Marks a method whose model calls are charged to the tenant of the `Scope` it is given."""

    @functools.wraps(method)
    def billed(*args: P.args, **kwargs: P.kwargs) -> R:
        scope = next((value for value in (*args, *kwargs.values()) if isinstance(value, Scope)), None)
        token = billed_tenant.set(scope.tenant if scope is not None else None)
        try:
            return method(*args, **kwargs)
        finally:
            billed_tenant.reset(token)

    return billed


def estimate_tokens(text: str) -> int:
    """A cheap upper estimate of `text`'s tokens: ASCII at 4 characters a token, any other character 1."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def estimate_texts(texts: Sequence[str]) -> int:
    return sum(estimate_tokens(text) for text in texts)


def estimate_messages(messages: Sequence[Mapping[str, Any]]) -> int:
    return _PER_PROMPT + sum(_PER_MESSAGE + estimate_tokens(str(m.get("content") or "")) for m in messages)


def reported_tokens(response: Any) -> int | None:
    """The tokens an answer says it used (prompt and completion), if it says."""
    usage = getattr(response, "usage", None)
    total = getattr(usage, "total_tokens", None)
    if isinstance(total, int):
        return total
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if isinstance(prompt, int):
        return prompt + (completion if isinstance(completion, int) else 0)
    return None


_CAPS: dict[Kind, tuple[str, str]] = {
    "embeddings": ("max_embedding_tokens_per_request", "MAX_EMBEDDING_TOKENS_PER_REQUEST"),
    "chat": ("max_prompt_tokens", "MAX_PROMPT_TOKENS"),
}


class Charge:
    """A reservation in a tenant's window, corrected once the model reports what it used. Used as
    a context manager around the call: a call that fails before it is settled gives its reservation
    back (a throttled or failed call costs the tenant nothing)."""

    def __init__(self, ledger: TokenLedger | None = None, tenant: str = "", window: int = 0, tokens: int = 0) -> None:
        self._ledger = ledger
        self.tenant = tenant
        self.window = window
        self.tokens = tokens
        self._settled = False

    def __enter__(self) -> Charge:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None and not self._settled:
            self.settle(0)

    def settle(self, used: int | None) -> None:
        self._settled = True
        if self._ledger is None or used is None or used == self.tokens:
            return
        try:
            self._ledger.adjust(self.tenant, self.window, used - self.tokens)
        except Exception:  # the call succeeded; a correction lost costs accuracy, not the answer
            logger.warning("could not correct tenant %r's token use by %d", self.tenant, used - self.tokens)


class TokenMeter:
    """The caps and the tenant budget, applied before each call to a remote model. Without a
    ledger (a tool, a test) only the caps apply; the composition root (shared/factory.py) gives the
    worker's one."""

    def __init__(
        self,
        settings: Settings,
        ledger: TokenLedger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._ledger = ledger
        self._clock = clock

    def check_cap(self, kind: Kind, estimate: int) -> None:
        field, setting = _CAPS[kind]
        cap = int(getattr(self.settings, field))
        if estimate > cap:
            what = "embedding input" if kind == "embeddings" else "chat prompt"
            raise PayloadTooLarge(
                f"the {what} is about {estimate} tokens, more than the {cap} one call may send ({setting}); "
                "send less at a time",
                details=[{"estimated_tokens": estimate, "limit": cap, "setting": setting}],
            )

    def admit(self, kind: Kind, estimate: int) -> Charge:
        """Checks the cap, then reserves `estimate` in the billed tenant's window (429 when over it)."""
        self.check_cap(kind, estimate)
        tenant, budget = billed_tenant.get(), self.settings.tenant_token_budget
        if tenant is None or budget <= 0 or self._ledger is None:
            return Charge()
        length = self.settings.tenant_token_window_seconds
        now = self._clock()
        window = int(now // length)
        retry_after = math.ceil((window + 1) * length - now)
        try:
            before = self._ledger.reserve(tenant, window, estimate, budget)
        except LedgerBusy:
            raise self._refusal("too many model calls of this tenant at once; retry shortly", 1) from None
        except BackendUnavailable as error:
            logger.warning("token ledger unavailable, %s call of tenant %r not counted: %s", kind, tenant, error)
            return Charge()
        if before is None:
            logger.info("tenant %r over its token budget (%d per %d s): %s call refused", tenant, budget, length, kind)
            raise self._refusal(
                f"this tenant has used its share of the language model ({budget} tokens per {length} s); "
                f"retry after {retry_after} s (searches are not limited)",
                retry_after,
            )
        return Charge(self._ledger, tenant, window, estimate)

    def _refusal(self, message: str, retry_after: int) -> QuotaExceeded:
        return QuotaExceeded(
            message,
            retry_after=retry_after,
            budget=self.settings.tenant_token_budget,
            window_seconds=self.settings.tenant_token_window_seconds,
        )
