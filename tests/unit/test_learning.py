"""Learning with reconciliation (shared/memory/learning.py) over the core's fakes: the fake LLM
extracts one fact per sentence and decides what the test's `decide` says; the real service writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import QuotaExceeded
from shared.graph.connection import GraphUnavailable
from shared.memory.learning import learn_from_text, learned_id
from shared.memory.reconcile import Decision, Malformed, Shown, parse_decisions, parse_facts
from shared.observability import meters
from shared.scope import Scope
from tests.fixtures.fake_core import Core, build_core, fails

ALICE = Scope("alice")


def _current(core: Core, user: str = "alice") -> list[str]:
    """The user's memories whose validity has not ended (read from the payload: H1's fields)."""
    rows = core.store.list_user(user, None, None, expired=True)
    return sorted(str(r.payload["data"]) for r in rows if not r.payload.get("valid_until"))


def _teach(core: Core, text: str, write_id: str, **kw: Any) -> Any:
    return learn_from_text(core.service, ALICE, text, {"source": "test"}, write_id=write_id, **kw)


def _by_text(targets: dict[str, tuple[str, list[str]]]) -> Any:
    """A `decide` that looks each fact up: fact -> (action, texts of the memories it names)."""

    def decide(facts: list[str], shown: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for index, fact in enumerate(facts):
            action, texts = targets.get(fact, ("ADD", []))
            out.append({"fact": index, "action": action, "ids": [h for h, t in shown.items() if t in texts]})
        return out

    return decide


def _fallbacks() -> int:
    return sum(int(p.value) for p in meters.points(meters.collect(), meters.LEARNING_FALLBACKS))


def test_new_facts_are_added_without_a_decision_call_when_nothing_is_known() -> None:
    core = build_core(graph=False)
    learned = _teach(core, "I live in Paris. I like tea.", "w1")
    assert [f.event for f in learned.facts] == ["ADD", "ADD"]
    assert _current(core) == ["I like tea", "I live in Paris"]
    assert len(core.llm.learning_asked) == 1  # extraction only: no memory to compare with
    assert learned.added == [learned_id("w1", 0), learned_id("w1", 1)]
    assert core.store.points[learned_id("w1", 0)][1]["source"] == "test"


def test_a_changed_value_supersedes_the_old_memory_with_history_on_both() -> None:
    core = build_core(graph=False)
    _teach(core, "I live in Paris", "w1")
    core.llm.decide = _by_text({"I live in Berlin now": ("SUPERSEDE", ["I live in Paris"])})
    learned = _teach(core, "I live in Berlin now", "w2")
    [fact] = learned.facts
    old, new = learned_id("w1", 0), learned_id("w2", 0)
    assert (fact.event, fact.memory_id, fact.ids) == ("SUPERSEDE", new, [old])
    assert _current(core) == ["I live in Berlin now"]
    assert core.store.points[old][1]["superseded_by"] == new and core.store.points[new][1]["supersedes"] == [old]
    assert [r["event"] for r in core.history.get_history(old)] == ["ADD", "SUPERSEDED"]
    assert [r["event"] for r in core.history.get_history(new)] == ["ADD", "SUPERSEDES"]
    # The decision saw the old memory by handle, never its id.
    decision = json.loads(core.llm.learning_asked[-1][-1]["content"])
    assert decision["memories"][0]["id"] == "m1" and decision["facts"][0]["similar"] == ["m1"]


def test_negation_invalidates_and_none_writes_nothing_and_both_may_stay() -> None:
    core = build_core(graph=False)
    _teach(core, "I drink coffee. I like tea", "w1")
    core.llm.decide = _by_text(
        {"I no longer drink coffee": ("INVALIDATE", ["I drink coffee"]), "I enjoy tea": ("NONE", [])}
    )
    learned = _teach(core, "I no longer drink coffee. I enjoy tea. I like green tea too", "w2")
    assert [f.event for f in learned.facts] == ["INVALIDATE", "NONE", "ADD"]
    assert _current(core) == ["I like green tea too", "I like tea"]
    assert [r["event"] for r in core.history.get_history(learned_id("w1", 0))] == ["ADD", "INVALIDATED"]
    assert learned.added == [learned_id("w2", 2)]


def test_redelivery_never_supersedes_twice_nor_makes_a_second_successor() -> None:
    core = build_core(graph=False)
    _teach(core, "I work at Acme", "w1")
    core.llm.decide = _by_text({"I work at Globex": ("SUPERSEDE", ["I work at Acme"])})
    first = _teach(core, "I work at Globex", "w2")
    again = _teach(core, "I work at Globex", "w2")  # the same event, delivered again
    assert first.added == [learned_id("w2", 0)] and again.facts[0].event in ("ADD", "NONE", "SUPERSEDE")
    assert _current(core) == ["I work at Globex"] and len(core.store.points) == 2
    assert [r["event"] for r in core.history.get_history(learned_id("w1", 0))] == ["ADD", "SUPERSEDED"]
    assert [r["event"] for r in core.history.get_history(learned_id("w2", 0))] == ["ADD", "SUPERSEDES"]


def test_a_malformed_or_failed_decision_adds_everything_and_is_counted() -> None:
    core = build_core(graph=False)
    _teach(core, "I live in Paris", "w1")
    before = _fallbacks()
    core.llm.raw_decision = "sure! here is JSON: {"
    learned = _teach(core, "I live in Rome", "w2")
    assert learned.fallback == "malformed" and [f.event for f in learned.facts] == ["ADD"]
    assert _current(core) == ["I live in Paris", "I live in Rome"] and _fallbacks() == before + 1


def test_ids_not_shown_are_ignored() -> None:
    core = build_core(graph=False)
    _teach(core, "I live in Paris", "w1")
    core.llm.decide = lambda facts, shown: [
        {"fact": 0, "action": "SUPERSEDE", "ids": ["m9", learned_id("elsewhere", 0)]},
        {"fact": 1, "action": "INVALIDATE", "ids": ["not-an-id"]},
    ]
    learned = _teach(core, "I live in Oslo. I have no car", "w2")
    assert [f.event for f in learned.facts] == ["ADD", "NONE"]
    assert _current(core) == ["I live in Oslo", "I live in Paris"]


def test_candidates_stay_in_the_scope_of_the_fact() -> None:
    core = build_core(graph=False)
    _teach(core, "I live in Paris", "w1", agent_id="travel")
    _teach(core, "I live in Lyon", "w0")  # the user's own scope: no agent
    seen: list[dict[str, str]] = []
    core.llm.decide = lambda facts, shown: seen.append(shown) or []  # type: ignore[func-returns-value]
    _teach(core, "I live in Nice", "w2", agent_id="travel")
    assert list(seen[0].values()) == ["I live in Paris"]
    other = build_core(graph=False)
    _teach(other, "I live in Paris", "w1")
    learn_from_text(other.service, Scope("bob"), "I live in Rome", None, write_id="w2")
    assert len(other.llm.learning_asked) == 2  # bob's fact saw none of alice's memories: no decision call


def test_the_tenants_budget_is_raised_not_swallowed() -> None:
    core = build_core(graph=False)
    _teach(core, "I live in Paris", "w1")
    original = core.llm.complete

    def refusing(messages: list[dict[str, str]], *, json_mode: bool = False) -> str:
        if "reconcile" in messages[0]["content"][:60]:
            raise QuotaExceeded("spent", retry_after=30, budget=1, window_seconds=60)
        return original(messages, json_mode=json_mode)

    core.llm.complete = refusing  # type: ignore[method-assign]
    with pytest.raises(QuotaExceeded):
        _teach(core, "I live in Rome", "w2")


def test_a_chat_turn_learns_through_reconciliation() -> None:
    core = build_core(graph=False)
    core.agent.chat("alice", "I live in Paris.", "s1")
    core.llm.decide = _by_text({"I live in Madrid": ("SUPERSEDE", ["I live in Paris"])})
    reply = core.agent.chat("alice", "I live in Madrid.", "s1")
    assert reply.learning.status == "succeeded" and _current(core) == ["I live in Madrid"]


SHOWN = [Shown("m1", "id-1", "Lives in Paris", None), Shown("m2", "id-2", "Likes tea", None)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"decisions": [{"fact": 0, "action": "SUPERSEDE", "ids": ["m1"]}]}', [Decision("SUPERSEDE", ("id-1",))]),
        ('{"decisions": [{"fact": 0, "action": "INVALIDATE", "ids": ["id-2"]}]}', [Decision("INVALIDATE", ("id-2",))]),
        ('{"decisions": []}', [Decision("ADD")]),
        ('{"decisions": [{"fact": 0, "action": "SUPERSEDE", "ids": ["m7"]}]}', [Decision("ADD")]),
        ('```json\n{"decisions": [{"fact": 0, "action": "NONE"}]}\n```', [Decision("NONE")]),
    ],
)
def test_decisions_are_read_strictly(raw: str, expected: list[Decision]) -> None:
    assert parse_decisions(raw, 1, SHOWN) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "no",
        "[]",
        '{"decision": []}',
        '{"decisions": [{"fact": 1, "action": "ADD"}]}',
        '{"decisions": [{"fact": 0, "action": "MERGE"}]}',
        '{"decisions": [{"fact": 0, "action": "ADD"}, {"fact": 0, "action": "NONE"}]}',
        '{"decisions": [{"fact": true, "action": "ADD"}]}',
        '{"decisions": [{"fact": 0, "action": "SUPERSEDE", "ids": "m1"}]}',
    ],
)
def test_malformed_decisions_are_refused(raw: str) -> None:
    with pytest.raises(Malformed):
        parse_decisions(raw, 1, SHOWN)


def test_facts_are_read_strictly() -> None:
    assert parse_facts('{"facts": ["住在上海", " ", "住在上海", "Likes tea"]}') == ["住在上海", "Likes tea"]
    for raw in ("{}", '{"facts": "x"}', '{"facts": [1]}', "facts"):
        with pytest.raises(Malformed):
            parse_facts(raw)


def test_a_graph_failure_ends_no_memory_and_the_purge_leaves_the_old_one_current() -> None:
    core = build_core()  # with the graph: it learns after the facts are stored, before anything is ended
    assert core.graph is not None
    core.agent.chat("alice", "I live in Paris.", "s1")
    core.llm.decide = _by_text({"I live in Madrid": ("SUPERSEDE", ["I live in Paris"])})
    core.graph.down = True
    assert isinstance(fails(lambda: core.agent.chat("alice", "I live in Madrid.", "s1")), GraphUnavailable)
    assert _current(core) == ["I live in Paris"] and len(core.store.points) == 1
    core.graph.down = False
    core.agent.chat("alice", "I live in Madrid.", "s1")
    assert _current(core) == ["I live in Madrid"]
