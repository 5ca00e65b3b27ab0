"""Fair use of the model (shared/ai/quota.py): the estimate, the caps, a tenant's budget in its
window with the local ledger and a fake clock, which calls are billed to which tenant, and a chat
prompt fitted to MAX_PROMPT_TOKENS. The shared ledger in Table Storage: tests/integration/test_token_ledger.py;
through two dev hosts and the fake OpenAI server: tests/e2e/test_tenant_quota.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.ai.quota import (
    LedgerBusy,
    TokenMeter,
    billed_tenant,
    bills_scope,
    estimate_messages,
    estimate_tokens,
    reported_tokens,
)
from shared.chat.agent import ChatAgent
from shared.contract import MemoryInput
from shared.errors import BackendUnavailable, PayloadTooLarge, QuotaExceeded
from shared.scope import Scope
from shared.settings import Settings
from shared.stores.state.sessions import Turn
from shared.stores.state.usage import LocalTokenLedger
from tests.fixtures.fake_core import FakeEmbedder, build_core, fails


def _settings(**values: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": Path("/nonexistent/quota"), "state_store": "local"}
    return Settings(**{**base, **values})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _meter(budget: int = 100, window: int = 60, now: float = 6_000.0, **values: Any) -> tuple[TokenMeter, Clock]:
    clock = Clock(now)
    settings = _settings(tenant_token_budget=budget, tenant_token_window_seconds=window, **values)
    return TokenMeter(settings, LocalTokenLedger(), clock), clock


def _as(tenant: str | None) -> Any:
    return billed_tenant.set(tenant)


def test_the_estimate_counts_ascii_by_four_and_any_other_character_as_one() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("我的猫叫米索") == 6
    assert estimate_tokens("café au lait") == 3 + 1  # 11 ASCII characters, one é
    assert estimate_messages([{"role": "user", "content": "abcd" * 10}]) == 3 + 4 + 10


def test_reported_tokens_read_the_usage_an_answer_carries() -> None:
    class Usage:
        def __init__(self, **values: int) -> None:
            self.__dict__.update(values)

    class Answer:
        def __init__(self, usage: Any) -> None:
            self.usage = usage

    assert reported_tokens(Answer(Usage(total_tokens=42, prompt_tokens=40))) == 42
    assert reported_tokens(Answer(Usage(prompt_tokens=40, completion_tokens=7))) == 47
    assert reported_tokens(Answer(None)) is None


def test_a_tenant_over_its_budget_is_refused_until_its_window_ends_and_others_go_on() -> None:
    meter, clock = _meter(budget=100, window=60, now=6_015.0)  # 15 s into a window
    token = _as("acme")
    try:
        meter.admit("embeddings", 60)
        meter.admit("chat", 40)  # exactly the budget
        refused = fails(lambda: meter.admit("embeddings", 1))
        assert isinstance(refused, QuotaExceeded) and refused.status == 429 and refused.code == "quota_exceeded"
        assert refused.headers == {"Retry-After": "45"}
        assert refused.details == [{"budget_tokens": 100, "window_seconds": 60}]
        billed_tenant.set("globex")
        meter.admit("embeddings", 100)  # another tenant has its own share
        billed_tenant.set("acme")
        clock.now = 6_060.0  # the next window
        meter.admit("embeddings", 100)
    finally:
        billed_tenant.reset(token)


def test_nothing_is_counted_without_a_billed_tenant_or_without_a_budget() -> None:
    meter, _ = _meter(budget=10)
    for _ in range(5):
        meter.admit("embeddings", 10)  # a search, or a call with no tenancy
    ledgerless = TokenMeter(_settings(tenant_token_budget=10))  # a tool's client: the caps only
    token = _as("acme")
    try:
        for _ in range(5):
            ledgerless.admit("chat", 10)
    finally:
        billed_tenant.reset(token)
    unlimited, _ = _meter(budget=0)
    token = _as("acme")
    try:
        for _ in range(5):
            unlimited.admit("chat", 1_000)
    finally:
        billed_tenant.reset(token)


def test_a_window_first_call_runs_even_when_larger_than_the_budget() -> None:
    meter, _ = _meter(budget=100)
    token = _as("acme")
    try:
        meter.admit("chat", 500)
        assert isinstance(fails(lambda: meter.admit("chat", 1)), QuotaExceeded)
    finally:
        billed_tenant.reset(token)


def test_a_reservation_is_corrected_to_the_usage_the_model_reports() -> None:
    ledger = LocalTokenLedger()
    meter = TokenMeter(_settings(tenant_token_budget=100), ledger, Clock(60.0))
    token = _as("acme")
    try:
        meter.admit("chat", 10).settle(90)  # the answer's tokens count too
        assert ledger.used("acme", 1) == 90
        meter.admit("embeddings", 10).settle(4)
        assert ledger.used("acme", 1) == 94
        assert isinstance(fails(lambda: meter.admit("chat", 10)), QuotaExceeded)
    finally:
        billed_tenant.reset(token)


def test_a_call_over_its_cap_is_413_for_anyone() -> None:
    meter, _ = _meter(budget=0, max_embedding_tokens_per_request=50, max_prompt_tokens=20)
    error = fails(lambda: meter.admit("embeddings", 51))
    assert isinstance(error, PayloadTooLarge) and error.status == 413
    assert error.details == [{"estimated_tokens": 51, "limit": 50, "setting": "MAX_EMBEDDING_TOKENS_PER_REQUEST"}]
    assert isinstance(fails(lambda: meter.admit("chat", 21)), PayloadTooLarge)
    meter.admit("embeddings", 50)
    meter.admit("chat", 20)


class _BrokenLedger:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def reserve(self, tenant: str, window: int, tokens: int, budget: int) -> int | None:
        raise self.error

    def adjust(self, tenant: str, window: int, delta: int) -> None:
        raise self.error


def test_an_unreachable_ledger_lets_the_call_go_on_and_a_busy_one_asks_to_retry_shortly() -> None:
    settings = _settings(tenant_token_budget=10)
    token = _as("acme")
    try:
        outage = TokenMeter(settings, _BrokenLedger(BackendUnavailable("state_store", "down")))
        outage.admit("chat", 100).settle(200)  # neither raises
        busy = TokenMeter(settings, _BrokenLedger(LedgerBusy("raced")))
        refused = fails(lambda: busy.admit("chat", 1))
        assert isinstance(refused, QuotaExceeded) and refused.headers["Retry-After"] == "1"
    finally:
        billed_tenant.reset(token)


def test_bills_scope_charges_the_tenant_of_the_scope_given_for_the_call_only() -> None:
    seen: list[str | None] = []

    @bills_scope
    def spend(first: Any, *, scope: Any = None) -> None:
        seen.append(billed_tenant.get())

    spend(Scope("u", tenant="acme"))
    spend("u", scope=Scope("u", tenant="globex"))
    spend("u")  # a plain user id: no tenancy, nobody billed
    assert seen == ["acme", "globex", None]
    assert billed_tenant.get() is None


class _RecordingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.billed: list[tuple[str, str | None]] = []

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        self.billed.append((str(memory_action), billed_tenant.get()))
        return super().embed(text, memory_action)


def test_writes_are_billed_to_the_callers_tenant_and_searches_to_nobody() -> None:
    core = build_core(graph=False)
    embedder = _RecordingEmbedder()
    core.service.embedder = embedder
    acme = Scope("alice", tenant="acme")
    core.service.add_memories(acme, [MemoryInput(content="I like green tea")])
    assert embedder.billed == [("add", "acme")]
    embedder.billed.clear()
    core.service.searcher.embedder = embedder
    core.service.search_memories(acme, "tea", 5)
    assert embedder.billed and all(tenant is None for _, tenant in embedder.billed)


def test_a_chat_prompt_drops_old_turns_then_the_least_relevant_memories_to_fit() -> None:
    core = build_core(graph=False)
    turns = [
        Turn(user_message=f"turn {i} " + "x" * 200, assistant_message="ok", timestamp="t", memories_used=[])
        for i in range(5)
    ]
    memories = [core.service.add_memory("alice", f"memory {i} " + "y" * 300) for i in range(3)]
    cap = estimate_messages(ChatAgent.build_prompt(memories[:1], [], "hello", [])) + 10  # room for one memory
    messages, kept = build_core(graph=False, max_prompt_tokens=cap).agent.fitted_prompt(memories, turns, "hello", [])
    assert estimate_messages(messages) <= cap
    assert [m["content"] for m in messages[2:]] == ["hello"]  # every turn dropped, oldest first
    assert kept == memories[:1]  # the best memories stay
    roomy, all_kept = build_core(graph=False).agent.fitted_prompt(memories, turns, "hello", [])
    assert len(roomy) == 2 + 2 * len(turns) + 1 and all_kept == memories  # within the default cap: all of it


@pytest.mark.parametrize("tenant", ["acme", "a/b#c?d%e"])
def test_the_local_ledger_keeps_one_counter_per_tenant_and_window(tenant: str) -> None:
    ledger = LocalTokenLedger()
    assert ledger.reserve(tenant, 7, 60, 100) == 0
    assert ledger.reserve(tenant, 7, 41, 100) is None
    assert ledger.reserve(tenant, 7, 40, 100) == 60
    ledger.adjust(tenant, 6, -100)  # an old window: nothing to correct
    assert ledger.used(tenant, 7) == 100
    assert ledger.reserve(tenant, 8, 5, 100) == 0


def test_a_service_error_mem0_wraps_is_raised_as_itself() -> None:
    from shared.lazy import Lazy
    from shared.memory.mem0_engine import Mem0Engine

    refusal = QuotaExceeded("over", retry_after=30, budget=10, window_seconds=60)

    class Mem0Like:
        def __init__(self) -> None:
            self.calls = 0

        def update(self, *args: Any, **kwargs: Any) -> None:
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("a bug of mem0's")
            try:
                raise refusal  # the re-embedding of the new text, refused by the tenant's budget
            except QuotaExceeded as error:
                raise RuntimeError(f"LLM extraction failed: {error}") from error  # what mem0's LLMError does

    engine = Mem0Engine.__new__(Mem0Engine)
    engine._memory = Lazy(Mem0Like)
    assert fails(lambda: engine.update("id", "x", None)) is refusal
    assert isinstance(fails(lambda: engine.update("id", "x", None)), RuntimeError)  # no service error inside


class _BudgetedEmbedder(FakeEmbedder):
    """Refuses the tenants in `over`, as the meter would once they have spent their budget."""

    def __init__(self) -> None:
        super().__init__()
        self.over: set[str] = set()

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        tenant = billed_tenant.get()
        if tenant in self.over:
            raise QuotaExceeded("over", retry_after=42, budget=10, window_seconds=60)
        return super().embed(text, memory_action)


def test_a_queued_add_refused_by_the_budget_waits_on_the_queue_instead_of_failing() -> None:
    core = build_core(graph=False, queued=True)
    embedder = _BudgetedEmbedder()
    core.service.embedder = embedder
    embedder.over.add("acme")
    acme = Scope("alice", tenant="acme")
    event = core.ingestion.submit_memories(acme, [MemoryInput(content="I like green tea")])
    [outcome] = core.deliver(last_attempt=True)  # even the last delivery: a wait is not a failure
    assert outcome.status == "queued" and outcome.error.startswith("quota_exceeded")
    assert core.queue is not None and core.queue.sent == [{"event_id": event.event_id, "user_id": acme.key}]
    assert core.queue.delays[-1] == 42  # hidden until the tenant's window ends
    embedder.over.clear()
    [done] = core.deliver(last_attempt=True)
    assert done.status == "succeeded" and [m.memory for m in core.service.list_memories(acme)] == ["I like green tea"]


def test_inline_a_refusal_by_the_budget_is_the_callers_429() -> None:
    core = build_core(graph=False)
    embedder = _BudgetedEmbedder()
    core.service.embedder = embedder
    embedder.over.add("acme")
    refused = fails(lambda: core.ingestion.submit_memories(Scope("a", tenant="acme"), [MemoryInput(content="x y")]))
    assert isinstance(refused, QuotaExceeded)
    assert (
        core.ingestion.submit_memories(Scope("a", tenant="globex"), [MemoryInput(content="x y")]).status == "succeeded"
    )


def test_a_call_that_fails_gives_its_reservation_back() -> None:
    ledger = LocalTokenLedger()
    meter = TokenMeter(_settings(tenant_token_budget=100), ledger, Clock(60.0))
    token = _as("acme")
    try:
        with pytest.raises(BackendUnavailable), meter.admit("chat", 60):
            raise BackendUnavailable("llm", "throttled")
        assert ledger.used("acme", 1) == 0
        with meter.admit("chat", 60) as charge:
            charge.settle(70)
        assert ledger.used("acme", 1) == 70
    finally:
        billed_tenant.reset(token)
