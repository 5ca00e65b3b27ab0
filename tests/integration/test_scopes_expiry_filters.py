"""Issue 14 through the memory service on each real engine (Qdrant Edge, the Qdrant server adapter
over qdrant-client's local mode, a Chroma server): the filter grammar translated by each adapter,
agent/run scopes, and expiry with its purge. Fixtures are the search tests' (two workers, one engine)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.contract import MemoryInput, SearchFilters
from shared.errors import NotFound, ValidationFailed
from tests.integration import test_search
from tests.integration.test_search import Workers

embedder = test_search.embedder  # the search tests' fixtures
workers = test_search.workers

ROWS: list[tuple[str, dict[str, Any]]] = [
    ("alpha likes green tea in the morning", {"topic": "tea time", "age": 30, "vip": True, "tier": "gold"}),
    ("beta drinks black coffee", {"topic": "coffee", "age": 40.5, "vip": False, "tier": "silver"}),
    ("gamma orders iced tea", {"topic": "Tea", "age": 25, "tier": "gold"}),
    ("delta has no preference at all", {}),
]


def _seed(service: Any, user: str) -> dict[str, str]:
    ids = service.add_memories(user, [MemoryInput(content=text, metadata=meta or None) for text, meta in ROWS])
    return {text.split()[0]: memory_id for (text, _), memory_id in zip(ROWS, ids, strict=True)}


def _found(service: Any, user: str, metadata: dict[str, Any]) -> set[str]:
    results = service.search_memories(user, "tea coffee preference", 10, SearchFilters(metadata=metadata))
    return {r.memory.split()[0] for r in results}


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"tier": "gold"}, {"alpha", "gamma"}),
    ({"age": {"eq": 30}}, {"alpha"}),
    ({"age": 30.0}, {"alpha"}),
    ({"tier": {"ne": "gold"}}, {"beta", "delta"}),  # ne holds without the key
    ({"age": {"gt": 30}}, {"beta"}),
    ({"age": {"gte": 30}}, {"alpha", "beta"}),
    ({"age": {"lt": 30}}, {"gamma"}),
    ({"age": {"lte": 30, "gt": 25}}, {"alpha"}),
    ({"tier": {"in": ["silver", "bronze"]}}, {"beta"}),
    ({"age": {"in": [25, 40.5]}}, {"beta", "gamma"}),
    ({"tier": {"nin": ["gold"]}}, {"beta", "delta"}),
    ({"vip": True}, {"alpha"}),
    ({"vip": {"ne": True}}, {"beta", "gamma", "delta"}),
    ({"OR": [{"tier": "silver"}, {"age": {"lt": 26}}]}, {"beta", "gamma"}),
    ({"AND": [{"tier": "gold"}, {"age": {"gte": 26}}]}, {"alpha"}),
    ({"NOT": [{"tier": "gold"}]}, {"beta", "delta"}),
    ({"NOT": [{"tier": "gold"}, {"vip": False}]}, {"delta"}),
    ({"OR": [{"AND": [{"tier": "gold"}, {"NOT": [{"vip": True}]}]}, {"age": {"gt": 40}}]}, {"beta", "gamma"}),
    ({"NOT": [{"OR": [{"tier": "silver"}, {"tier": {"in": ["gold"]}}]}]}, {"delta"}),
]


@pytest.mark.parametrize(("metadata", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_each_operator_and_nesting_runs_in_the_engine(workers: Workers, metadata: dict, expected: set) -> None:
    user = f"ops-{time.monotonic_ns()}"
    _seed(workers.one, user)
    assert _found(workers.two, user, metadata) == expected


def test_contains_matches_words_on_qdrant_and_is_refused_on_chroma(workers: Workers) -> None:
    user = f"contains-{time.monotonic_ns()}"
    _seed(workers.one, user)
    if workers.store.kind == "chroma":
        with pytest.raises(ValidationFailed, match="contains"):
            _found(workers.two, user, {"topic": {"contains": "tea"}})
        return
    assert _found(workers.two, user, {"topic": {"contains": "tea"}}) == {"alpha", "gamma"}  # words, any case
    assert _found(workers.two, user, {"topic": {"contains": "TIME tea"}}) == {"alpha"}
    assert _found(workers.two, user, {"topic": {"contains": "te"}}) == set()
    assert _found(workers.two, user, {"NOT": [{"topic": {"contains": "tea"}}]}) == {"beta", "delta"}


def test_a_negated_range_on_a_missing_key(workers: Workers) -> None:
    """The one documented difference: Chroma cannot say "the key is missing" (its De Morgan form is
    `lte`), so there a memory without the key may be left out when the engine runs the filter."""
    user = f"neg-{time.monotonic_ns()}"
    _seed(workers.one, user)
    found = _found(workers.two, user, {"NOT": [{"age": {"gt": 30}}]})
    if workers.store.kind == "chroma":
        assert {"alpha", "gamma"} <= found <= {"alpha", "gamma", "delta"}
    else:
        assert found == {"alpha", "gamma", "delta"}


def test_agent_and_run_scopes_on_search_list_and_delete(workers: Workers) -> None:
    one, two = workers.one, workers.two
    user = f"scopes-{time.monotonic_ns()}"
    one.add_memory(user, "tea with the planner agent", agent_id="planner", run_id="r1")
    one.add_memory(user, "tea with the planner again", agent_id="planner", run_id="r2")
    one.add_memories(user, [MemoryInput(content="tea with the coder agent")], agent_id="coder", run_id="r1")
    one.add_memory(user, "tea without any agent")
    one.add_memory("someone-else", "tea with the planner agent", agent_id="planner")

    def texts(records: list) -> set[str]:
        return {r.memory for r in records}

    assert len(two.list_memories(user)) == 4
    planner = two.list_memories(user, agent_id="planner")
    assert texts(planner) == {"tea with the planner agent", "tea with the planner again"}
    assert {r.agent_id for r in planner} == {"planner"} and {r.run_id for r in planner} == {"r1", "r2"}
    assert texts(two.list_memories(user, run_id="r1")) == {"tea with the planner agent", "tea with the coder agent"}
    assert texts(two.list_memories(user, agent_id="planner", run_id="r2")) == {"tea with the planner again"}
    assert texts(two.search_memories(user, "tea", 10, None, agent_id="coder")) == {"tea with the coder agent"}
    both = two.search_memories(user, "tea", 10, SearchFilters(metadata={"x": {"ne": 1}}), run_id="r2")
    assert texts(both) == {"tea with the planner again"}

    assert two.delete_user_memories(user, agent_id="planner") == 2
    assert texts(two.list_memories(user)) == {"tea with the coder agent", "tea without any agent"}
    assert len(two.list_memories("someone-else", agent_id="planner")) == 1  # another user's scope untouched


def test_expired_memories_are_never_returned_and_the_purge_erases_them(workers: Workers) -> None:
    one, two = workers.one, workers.two
    user = f"expiry-{time.monotonic_ns()}"
    from datetime import UTC, date, datetime, timedelta

    gone = one.add_memory(user, "the parking code was 4417", expiration_date=date.today() - timedelta(days=2))
    soon = one.add_memory(user, "the parking code is 9921", expiration_date=datetime.now(UTC) + timedelta(days=1))
    batch = one.add_memories(
        user,
        [
            MemoryInput(content="the old parking code 1203", expiration_date=datetime(2020, 1, 1, tzinfo=UTC)),
            MemoryInput(content="parking is on level two"),
        ],
    )
    live = {soon.id, batch[1]}
    assert {r.id for r in two.list_memories(user)} == live
    assert {r.id for r in two.search_memories(user, "parking code", 10, None)} == live
    assert two.stats(user).total_memories == 2 and two.count_memories(user) == 2
    with pytest.raises(NotFound):
        two.get_memory(gone.id, user)
    assert two.get_memory(soon.id, user).expiration_date == soon.expiration_date

    assert one.history.get_history(gone.id)  # the history is there until the purge
    # The worker that wrote them purges: on Chroma the two workers here keep separate local history.
    assert one.purge_expired() == 2
    assert one.store.get(gone.id) is None and one.store.get(batch[0]) is None
    assert one.history.get_history(gone.id) == [] and one.history.get_history(batch[0]) == []
    assert {r.id for r in two.list_memories(user)} == live
    assert one.purge_expired() == 0
    # Later, the other one expires too: a purge "now" in two days takes it.
    assert one.purge_expired(now=time.time() + 2 * 86_400) == 1
    assert {r.id for r in two.list_memories(user)} == {batch[1]}


def test_every_field_a_search_always_filters_on_is_indexed(tmp_path: Any) -> None:
    """Each search carries the user and "not expired" (`_mortal`, `_expires`); unindexed, the engine
    reads every one of the user's payloads for them (measured: 8x slower candidates at 10,000)."""
    from shared.stores.vector.edge import EdgeVectorStore
    from shared.stores.vector.port import EXPIRES_KEY, MORTAL_KEY, USER_KEY
    from shared.stores.vector.qdrant.schema import payload_indexes

    store = EdgeVectorStore(tmp_path / "shard", "memories", 4)
    try:
        schema = store.shard.info().payload_schema
    finally:
        store.close()
    for key in (USER_KEY, MORTAL_KEY, EXPIRES_KEY):
        assert key in schema, key
        assert key in payload_indexes(local=False), key
