"""The duplicate check (shared/memory/dedupe.py) over the fakes: what is the same text, what is near,
which memories count (current ones of the same tenant, user, agent and run), one store round trip per
add or batch, `allow_duplicates`, and the ingestion events. Every engine answers the check's store call
for real in tests/integration/test_store_contract.py; the HTTP face is tests/e2e/test_api_duplicates.py.

The fake embedder is a bag of words: the same words in another order are cosine 1.0 (a near duplicate
at any threshold), other words are far."""

from __future__ import annotations

import pytest

from shared.contract import MemoryInput
from shared.errors import BackendUnavailable
from shared.memory.dedupe import (
    THRESHOLDS,
    Added,
    DuplicateRecord,
    Near,
    find_duplicates,
    threshold_for,
)
from shared.memory.ingest import memory_ids_for
from shared.query.sameness import norm_key, normalize, scope_tag
from shared.scope import Scope
from shared.settings import Settings
from tests.fixtures.fake_core import Core, build_core


@pytest.fixture
def core() -> Core:
    return build_core()


def _batch(core: Core, user: str | Scope, *texts: str, **kwargs: object) -> Added:
    ids = core.service.add_memories(user, [MemoryInput(content=text) for text in texts], **kwargs)  # type: ignore[arg-type]
    assert isinstance(ids, Added)
    return ids


# --- the same text ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("I like tea", "i LIKE tea"),
        ("I like tea", "  I   like\ttea \n"),
        ("I like tea", "I like tea."),
        ("I like tea", "I like tea!!!"),
        ("我喜欢喝茶", "我喜欢喝茶。"),
        ("我喜欢喝茶", "我喜欢喝茶！"),
        ("你喜欢喝茶吗", "你喜欢喝茶吗？"),
        ("ABC 123", "ＡＢＣ　１２３"),  # full-width letters, digits and space
        ("Straße", "STRASSE"),  # case folded, not only lowered
    ],
)
def test_these_are_the_same_text(a: str, b: str) -> None:
    assert normalize(a) == normalize(b) and norm_key(a) == norm_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("I like tea", "I like coffee"),
        ("Thanks, Nate", "Thanks Nate"),  # inside the text, punctuation is kept
        ("lives in Paris", "lived in Paris"),
        ("?", "!"),  # a text of punctuation alone stays itself
    ],
)
def test_these_are_not(a: str, b: str) -> None:
    assert norm_key(a) != norm_key(b)


def test_the_scope_keyword_tells_agents_and_runs_apart() -> None:
    tags = {scope_tag(None, None), scope_tag("a", None), scope_tag(None, "a"), scope_tag("a", "b"), scope_tag("b", "a")}
    assert len(tags) == 5 and scope_tag("", None) == scope_tag(None, "")


# --- one add -----------------------------------------------------------------------------------------
def test_the_same_text_twice_is_stored_once(core: Core) -> None:
    first = core.service.add_memory("alice", "I like tea", {"category": "food"})
    again = core.service.add_memory("alice", "  i like TEA. ")
    assert isinstance(again, DuplicateRecord) and not isinstance(first, DuplicateRecord)
    assert again.id == first.id and again.memory == "I like tea" and again.user_id == "alice"
    assert again.metadata == {"category": "food"}
    assert core.service.count_memories("alice") == 1 and len(core.history.get_history(first.id)) == 1


def test_a_near_duplicate_is_not_stored_and_a_different_fact_is(core: Core) -> None:
    first = core.service.add_memory("alice", "works at Google as an engineer")
    near = core.service.add_memory("alice", "works as an engineer at Google")  # the fake's cosine: 1.0
    other = core.service.add_memory("alice", "works at Apple as an engineer")
    assert near.id == first.id and isinstance(near, DuplicateRecord)
    assert other.id != first.id and not isinstance(other, DuplicateRecord)
    assert core.service.count_memories("alice") == 2


def test_allow_duplicates_stores_it_again(core: Core) -> None:
    first = core.service.add_memory("alice", "I like tea")
    again = core.service.add_memory("alice", "I like tea", allow_duplicates=True)
    assert again.id != first.id and core.service.count_memories("alice") == 2
    # and a later add finds one of them (the oldest), not a third copy
    assert core.service.add_memory("alice", "I like tea").id == first.id


def test_another_user_scope_or_tenant_is_never_a_duplicate(core: Core) -> None:
    mine = core.service.add_memory("alice", "I like tea").id
    others = [
        core.service.add_memory("bob", "I like tea"),
        core.service.add_memory("alice", "I like tea", agent_id="planner"),
        core.service.add_memory("alice", "I like tea", run_id="r1"),
        core.service.add_memory("alice", "I like tea", agent_id="planner", run_id="r1"),
        core.service.add_memory(Scope("alice", tenant="acme"), "I like tea"),
        core.service.add_memory(Scope("alice", tenant="globex"), "I like tea"),
    ]
    assert len({record.id for record in others} | {mine}) == 7
    assert not any(isinstance(record, DuplicateRecord) for record in others)
    # each scope now has its own, found again
    assert core.service.add_memory("alice", "I like tea", agent_id="planner").id == others[1].id
    assert core.service.add_memory(Scope("alice", tenant="acme"), "i like tea").id == others[4].id


def test_an_expired_or_deleted_memory_is_not_current(core: Core) -> None:
    from datetime import date

    old = core.service.add_memory("alice", "I like tea", expiration_date=date(2000, 1, 1))
    fresh = core.service.add_memory("alice", "I like tea")
    assert fresh.id != old.id and not isinstance(fresh, DuplicateRecord)
    core.service.delete_memory(fresh.id, "alice")
    assert not isinstance(core.service.add_memory("alice", "I like tea"), DuplicateRecord)


def test_an_updated_memory_is_found_by_its_new_text(core: Core) -> None:
    memory = core.service.add_memory("alice", "I live in Paris").id
    core.service.update_memory(memory, "I live in Berlin", None, "alice")
    assert core.service.add_memory("alice", "I live in Berlin").id == memory
    assert core.service.add_memory("alice", "I live in Paris").id != memory


# --- a batch -----------------------------------------------------------------------------------------
def test_a_batch_is_checked_in_one_store_call_against_the_store_and_itself(core: Core) -> None:
    tea = core.service.add_memory("alice", "I like tea").id
    calls = core.store.twin_calls
    ids = _batch(core, "alice", "I like tea.", "I play chess", "i play CHESS", "chess I play", "I like coffee")
    assert core.store.twin_calls == calls + 1
    assert ids.duplicate == [True, False, True, True, False]
    assert ids[0] == tea and ids[2] == ids[3] == ids[1] and len(set(ids)) == 3
    assert core.service.count_memories("alice") == 3
    assert all(len(core.history.get_history(i)) == 1 for i in set(ids))  # one ADD row each, none for a duplicate


def test_a_batch_of_duplicates_only_writes_nothing(core: Core) -> None:
    tea = core.service.add_memory("alice", "I like tea").id
    rows, inserts = len(core.history.rows), len(core.store.points)
    ids = _batch(core, "alice", "I like tea", "I LIKE TEA!")
    assert list(ids) == [tea, tea] and ids.duplicate == [True, True]
    assert len(core.history.rows) == rows and len(core.store.points) == inserts


def test_allow_duplicates_on_a_batch_stores_every_item(core: Core) -> None:
    ids = _batch(core, "alice", "I like tea", "I like tea", allow_duplicates=True)
    assert ids.duplicate == [False, False] and len(set(ids)) == 2 and core.store.twin_calls == 0


def test_a_store_outage_during_the_check_is_a_503_and_nothing_is_written(core: Core) -> None:
    core.store.outage.down = True
    with pytest.raises(BackendUnavailable):
        _batch(core, "alice", "I like tea")
    core.store.outage.down = False
    assert core.service.count_memories("alice") == 0 and not core.history.rows


# --- ingestion events ------------------------------------------------------------------------------
def test_an_asynchronous_batch_skips_duplicates_and_its_redo_writes_no_copy() -> None:
    queued = build_core(queued=True)
    tea = queued.service.add_memory("alice", "I like tea").id
    items = [
        MemoryInput(content="I like tea!"),
        MemoryInput(content="I play chess"),
        MemoryInput(content="i play chess"),
    ]
    event = queued.ingestion.submit_memories("alice", items)
    queued.queue.sent.append(dict(queued.queue.sent[0]))  # type: ignore[union-attr]  # delivered twice
    first, second = queued.deliver()
    own = memory_ids_for(event.event_id, 3)
    assert first.status == second.status == "succeeded" and first.memory_ids == [tea, own[1], own[1]]
    assert queued.service.count_memories("alice") == 2
    allowed = queued.ingestion.submit_memories("alice", items[:1], allow_duplicates=True)
    [done] = queued.deliver()
    assert done.event_id == allowed.event_id and done.memory_ids == memory_ids_for(allowed.event_id, 1)
    assert queued.service.count_memories("alice") == 3


def test_a_failed_event_purges_only_its_own_memories_never_the_existing_one() -> None:
    queued = build_core(queued=True)
    tea = queued.service.add_memory("alice", "I like tea").id
    queued.ingestion.submit_memories("alice", [MemoryInput(content="I like tea"), MemoryInput(content="new")])
    queued.history.outage.down = True
    [error] = queued.deliver(last_attempt=True)
    queued.history.outage.down = False
    assert isinstance(error, BackendUnavailable)
    assert set(queued.store.points) == {tea}


# --- the entry point and the thresholds ----------------------------------------------------------------
def test_find_duplicates_folds_the_batch_only_with_ids(core: Core) -> None:
    texts = ["I like tea", "I LIKE TEA"]
    vectors = core.embedder.embed_batch(texts)
    assert find_duplicates(core.store, "alice", None, texts, vectors) == [None, None]
    assert find_duplicates(core.store, "alice", None, texts, vectors, ids=["a", "b"]) == [None, "a"]
    tea = core.service.add_memory("alice", "I like tea", agent_id="planner").id
    assert find_duplicates(core.store, "alice", {"agent_id": "planner"}, texts, vectors) == [tea, tea]
    assert find_duplicates(core.store, "alice", None, texts, vectors) == [None, None]
    assert find_duplicates(core.store, "alice", None, [], []) == []


def test_a_model_that_cannot_read_chinese_merges_only_the_same_chinese_text(core: Core) -> None:
    same = [1.0] + [0.0] * (core.embedder.dims - 1)  # what MiniLM gives two Chinese facts of one length
    core.store.insert(
        [same], [{"user_id": "alice", "data": "我有两只猫", "created_at": "2024-05-01T00:00:00Z"}], ["m1"]
    )
    texts = ["我有两只狗", "我有两只猫。"]
    blind, seeing = Near(0.99, cjk=False), Near(0.99)
    assert find_duplicates(core.store, "alice", None, texts, [same, same], threshold=blind) == [None, "m1"]
    assert find_duplicates(core.store, "alice", None, texts, [same, same], threshold=seeing) == ["m1", "m1"]
    assert find_duplicates(core.store, "alice", None, texts, [same, same], threshold=None) == [None, "m1"]
    # a plain number keeps the configured model's rule (all-MiniLM-L6-v2: blind to the Chinese memory)
    assert find_duplicates(core.store, "alice", None, ["I have two dogs"], [same], threshold=0.99) == [None]
    assert find_duplicates(core.store, "alice", None, ["I have two dogs"], [same], threshold=seeing) == ["m1"]


def test_the_threshold_is_the_models_measured_one_unless_set() -> None:
    base = {"data_dir": "/nonexistent", "state_store": "local", "llm_provider": "none"}
    minilm = threshold_for(Settings(**base))  # type: ignore[arg-type]
    assert minilm == THRESHOLDS["sentence-transformers/all-MiniLM-L6-v2"] and minilm is not None and not minilm.cjk
    assert threshold_for(Settings(**base, duplicate_threshold=0.9)) == Near(0.9, cjk=False)  # type: ignore[arg-type]
    assert threshold_for(Settings(**base, local_embedding_model="multilingual")) == Near(0.995)  # type: ignore[arg-type]
    unmeasured = Settings(**base, embedding_provider="openai", openai_base_url="http://x", openai_api_key="k")  # type: ignore[arg-type]
    assert threshold_for(unmeasured) is None


def test_texts_with_other_numbers_are_never_near_duplicates(core: Core) -> None:
    moved = core.service.add_memory("alice", "moved to Portland in 2019 with the kids").id
    other_year = core.service.add_memory("alice", "moved to Portland in 2021 with the kids")
    same_words = core.service.add_memory("alice", "with the kids moved to Portland in 2019")  # the fake's cosine 1.0
    wide = core.service.add_memory("alice", "moved to Portland in ２０１９ with the kids!")  # full-width digits
    assert other_year.id != moved and not isinstance(other_year, DuplicateRecord)
    assert same_words.id == moved and wide.id == moved
    ids = _batch(core, "bob", "has 2 cats and 1 dog", "has 1 dog and 2 cats", "has 3 cats and 1 dog")
    assert ids.duplicate == [False, True, False] and ids[1] == ids[0] != ids[2]


def test_a_batchs_ids_are_a_list_that_dataclasses_can_copy() -> None:
    from dataclasses import asdict, dataclass

    @dataclass
    class Holder:
        ids: list[str]

    ids = Added(["a", "b"], [False, True])
    assert asdict(Holder(ids)) == {"ids": ["a", "b"]} and ids.duplicate == [False, True]
    assert Added(iter(["x"])).duplicate == [False]
