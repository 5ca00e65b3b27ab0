"""What only the Chroma adapter (shared/stores/vector/chroma/) does, against a real Chroma 1.5.9 server:
a collection per user, keyword scores as idf-weighted shares, its layouts and maintenance, outages.
What every adapter does is in test_store_contract.py.

Every test has collections of its own (a fresh name) on the session's server, and removes them.
Vectors are built to a known cosine where the test is about arithmetic, and come from the local
MiniLM model where it is about meaning.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import chromadb
import numpy as np
import pytest

from shared.ai.embeddings import LocalEmbedder
from shared.contract import SearchFilters
from shared.errors import ConfigurationProblem
from shared.stores.vector.chroma import ChromaVectorStore, analysed
from shared.stores.vector.chroma.queries import memory_key
from shared.stores.vector.port import SEQ_KEY, TS_KEY, Candidates
from tests.helpers import local_model_path
from tools.harness.chroma_server import ChromaServer

DIMS = 384
START = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", local_model_path(), DIMS, 1)


@pytest.fixture(scope="module")
def mem0_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """mem0 reads its settings when first imported: the service's (no telemetry, its folder) first."""
    from shared.memory.mem0_engine import prepare_mem0_environment
    from shared.settings import Settings

    prepare_mem0_environment(Settings(data_dir=tmp_path_factory.mktemp("mem0"), llm_provider="none"))


@pytest.fixture
def client(chroma_server: ChromaServer) -> chromadb.api.ClientAPI:
    return chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)


@pytest.fixture
def store(client: chromadb.api.ClientAPI) -> Iterator[ChromaVectorStore]:
    adapter = ChromaVectorStore(client, f"t-{uuid.uuid4().hex[:10]}", DIMS)
    yield adapter
    adapter.delete_col()
    adapter.close()


# --- helpers -----------------------------------------------------------------------------------
def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS)
    return v / np.linalg.norm(v)


def at_cosine(base: np.ndarray, cos: float, seed: int) -> list[float]:
    """A unit vector whose cosine with `base` (a unit vector) is `cos`."""
    other = unit(seed)
    other -= other.dot(base) * base
    other /= np.linalg.norm(other)
    return (cos * base + math.sqrt(1 - cos * cos) * other).tolist()


def payload(user: str, text: str, minutes: int = 0, **extra: Any) -> dict[str, Any]:
    created = (START + timedelta(minutes=minutes)).isoformat()
    return {
        "user_id": user,
        "data": text,
        "hash": uuid.uuid4().hex,
        "created_at": created,
        "updated_at": created,
    } | extra


def add(store: ChromaVectorStore, rows: list[tuple[list[float], dict[str, Any]]]) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in rows]
    store.insert([v for v, _ in rows], [p for _, p in rows], ids)
    return ids


def by_id(found: Candidates) -> dict[str, Any]:
    return {c.id: c for c in found.items}


# --- the adapter's own answers ------------------------------------------------------------------
def test_a_memory_the_catalog_lost_is_still_deleted_when_its_user_is_named(store: ChromaVectorStore) -> None:
    rows = [(unit(1).tolist(), payload("alice", "kept")), (unit(2).tolist(), payload("alice", "lost"))]
    kept, lost = add(store, rows)
    store.catalog.delete(ids=[memory_key(lost)])  # a write that stopped before its catalog record
    assert store.count_user("alice") == 2 and store.owners([lost]) == {}
    store.delete(lost)  # without the owner the adapter cannot find it: nothing to do
    assert store.count_user("alice") == 2
    store.delete(lost, user_id="bob")  # another user named: only that user's collection is touched
    assert store.count_user("alice") == 2
    store.delete(lost, user_id="alice")
    assert store.count_user("alice") == 1 and store.get(lost) is None and store.get(kept) is not None


def test_no_keyword_search_for_mem0_and_a_ping_of_the_server(store: ChromaVectorStore) -> None:
    assert store.keyword_search("anything") is None  # mem0 then ranks by its dense search alone
    assert store.ping()["kind"] == "chroma"


def test_keys_chroma_cannot_hold_are_left_out(store: ChromaVectorStore) -> None:
    (memory_id,) = add(store, [(unit(1).tolist(), payload("alice", "I keep bees", note=None, tags=[]))])
    hit = store.get(memory_id)
    assert hit is not None and "note" not in hit.payload and "tags" not in hit.payload  # neither None nor []


def test_a_search_without_a_user_is_refused(store: ChromaVectorStore) -> None:
    with pytest.raises(ValueError, match="user_id"):  # the user names the collection to search
        store.search("q", unit(1).tolist(), 5, {"agent_id": "x"})


def test_a_payload_without_a_user_is_refused(store: ChromaVectorStore) -> None:
    with pytest.raises(ValueError, match="user_id"):
        store.insert([unit(1).tolist()], [{"data": "nobody's"}], [str(uuid.uuid4())])


class _DeletedAfterRead:
    """A user collection on which a delete of `victim` lands right after the adapter's next read."""

    def __init__(self, store: ChromaVectorStore, inner: Any, victim: str) -> None:
        self.store, self.inner, self.victim = store, inner, victim

    def get(self, *args: Any, **kwargs: Any) -> Any:
        got = self.inner.get(*args, **kwargs)
        victim, self.victim = self.victim, ""
        if victim:
            self.store.delete(victim)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("rewrite", ["payload and vector", "payload", "vector"])
def test_update_never_brings_back_a_deleted_memory(
    store: ChromaVectorStore, monkeypatch: pytest.MonkeyPatch, rewrite: str
) -> None:
    """mem0's update reads the memory, then writes it; a delete landing in between wins (Chroma's
    update of an id that is gone writes nothing, and the catalog entry went with the delete)."""
    [kept, racing] = add(
        store,
        [(unit(1).tolist(), payload("alice", "I like tea")), (unit(2).tolist(), payload("alice", "I live in Lisbon"))],
    )
    collection, space = store._user("alice", False) or (None, "")
    racing_collection = _DeletedAfterRead(store, collection, racing)
    monkeypatch.setattr(store, "_user", lambda user, create=False: (racing_collection, space))
    if rewrite == "vector":
        store.delete(racing)  # a vector-only rewrite reads nothing first: the delete simply comes first
    vector = unit(3).tolist() if rewrite != "payload" else None
    new_payload = payload("alice", "I live in Porto") if rewrite != "vector" else None
    store.update(racing, vector=vector, payload=new_payload)
    monkeypatch.undo()
    assert store.get(racing) is None and store.fetch([racing]) == {}
    assert [h.id for h in store.list_user("alice")] == [kept] and store.count_user("alice") == 1
    assert store.owners([racing]) == {}


# --- candidates ----------------------------------------------------------------------------------
def test_a_keyword_only_hit_comes_back_with_its_exact_cosine(store: ChromaVectorStore) -> None:
    q = unit(20)
    near = add(
        store, [(at_cosine(q, 0.9 - i * 0.01, 200 + i), payload("alice", f"weather note {i}")) for i in range(8)]
    )
    (far,) = add(store, [(at_cosine(q, -0.3, 299), payload("alice", "Our dog is called Quimby"))])
    found = store.candidates("alice", q.tolist(), "who is quimby", 5, None)
    items = by_id(found)
    assert far in items
    assert items[far].semantic == pytest.approx(-0.3, abs=1e-5)
    assert items[far].keyword == 1.0  # "who" and "is" are stop words: quimby is the one term
    dense = [m for m in near[:5]]
    assert all(items[m].keyword == 0.0 for m in dense)
    assert items[near[0]].semantic == pytest.approx(0.9, abs=1e-4)
    assert found.keyword_exhaustive


def test_keyword_share_is_idf_weighted_over_distinct_query_terms(store: ChromaVectorStore) -> None:
    q = unit(21)
    both, one = add(
        store,
        [
            (at_cosine(q, 0.1, 211), payload("alice", "Running shoes for the marathon")),
            (at_cosine(q, 0.1, 212), payload("alice", "I ran a marathon")),
        ],
    )
    items = by_id(store.candidates("alice", q.tolist(), "marathon running MARATHON", 10, None))
    assert items[both].keyword == 1.0  # "running" and "marathon" (stems, case folded)
    # "ran" is not "run" to a stemmer; "marathon" is in both of the user's two memories, so it
    # weighs less than "run", held by one: BM25's idf over the user's memories
    marathon, run = math.log(1 + 0.5 / 2.5), math.log(1 + 1.5 / 1.5)
    assert items[one].keyword == pytest.approx(marathon / (marathon + run))


def test_multi_term_matches_are_found_past_the_keyword_window(store: ChromaVectorStore) -> None:
    q = unit(22)
    common = [(at_cosine(q, 0.0, 300 + i), payload("alice", f"coffee break number {i}")) for i in range(60)]
    add(store, common)
    best = add(store, [(at_cosine(q, 0.0, 400 + i), payload("alice", f"coffee and espresso {i}")) for i in range(3)])
    found = store.candidates("alice", q.tolist(), "coffee espresso", 5, None)
    keyword = sorted((c for c in found.items if c.keyword > 0), key=lambda c: -c.keyword)
    assert {c.id for c in keyword[:3]} == set(best)
    assert all(c.keyword == 1.0 for c in keyword[:3])
    assert not found.keyword_exhaustive  # 63 memories match a query term; 5 were asked for


# 43 memories: at limit 5 the user is small (one scan gets every keyword match); at limit 4 the
# tiered scans and the unfiltered-first filter paths run.
@pytest.mark.parametrize("limit", [5, 4])
def test_filters_hold_on_both_sides(store: ChromaVectorStore, limit: int) -> None:
    q = unit(23)
    rows = []
    for i in range(40):
        category = ["work", "home"][i % 2]
        rows.append((at_cosine(q, 0.8 - i * 0.005, 500 + i), payload("alice", f"filler {i}", i, category=category)))
    rows.append((at_cosine(q, 0.05, 600), payload("alice", "the kiwi project", 100, category="work", team="a")))
    rows.append((at_cosine(q, 0.05, 601), payload("alice", "the kiwi garden", 200, category="home", team="a")))
    rows.append((at_cosine(q, 0.05, 602), payload("alice", "the kiwi review", 300, category="work", team="b")))
    ids = add(store, rows)
    kiwi_project, kiwi_garden, kiwi_review = ids[-3:]

    def ask(filters: SearchFilters) -> dict[str, Any]:
        found = store.candidates("alice", q.tolist(), "kiwi", limit, filters)
        return by_id(found)

    work = ask(SearchFilters(categories=["work"]))  # broad: half the memories pass
    assert all(c.payload["category"] == "work" for c in work.values())
    assert kiwi_project in work and kiwi_review in work and kiwi_garden not in work
    assert len([c for c in work.values() if c.keyword == 0]) == limit  # the dense side still fills up

    team = ask(SearchFilters(metadata={"team": "a"}))  # narrow: the engine filters
    assert set(team) == {kiwi_project, kiwi_garden}

    after = ask(SearchFilters(created_after=START + timedelta(minutes=150)))
    assert set(after) == {kiwi_garden, kiwi_review}
    before = ask(SearchFilters(created_before=START + timedelta(minutes=200), categories=["home"]))
    assert kiwi_garden not in before and kiwi_project not in before
    assert all(
        c.payload["category"] == "home" and c.payload[TS_KEY] < START.timestamp() + 200 * 60 for c in before.values()
    )
    assert len(before) == limit  # dense side: the 20 "home" fillers were written before minute 200

    # mem0's own filter grammar on `search` and `list`
    hits = store.search("q", q.tolist(), 50, {"user_id": "alice", "category": {"in": ["home"]}, "team": "a"})
    assert [h.id for h in hits] == [kiwi_garden]
    # `ne` holds for memories without the key too, in Chroma and in the adapter's own check
    assert {h.id for h in store.list({"user_id": "alice", "team": {"ne": "a"}}, 100)[0]} == set(ids) - {
        kiwi_project,
        kiwi_garden,
    }


def test_chinese_memories_are_keyword_candidates(store: ChromaVectorStore, embedder: LocalEmbedder) -> None:
    texts = ["用户偏好使用Python进行数据分析", "喜欢早上喝咖啡", "工作时间是9-17点"]
    ids = add(store, [(embedder.embed(t), payload("alice", t)) for t in texts])
    query = "编程语言偏好"
    found = store.candidates("alice", embedder.embed(query, "search"), query, 10, None)
    keyword = sorted((c for c in found.items if c.keyword > 0), key=lambda c: -c.keyword)
    # CJK text is matched on character bigrams: 偏好 is shared by the query and the Python memory only
    assert [c.id for c in keyword] == [ids[0]]
    # of the query's bigrams (编程 程语 语言 言偏 偏好) only 偏好 is in any memory: it is the whole share
    assert keyword[0].keyword == pytest.approx(1.0)
    assert analysed(texts[0]).split()[:3] == ["用户", "户偏", "偏好"]


def test_meaning_and_words_together(store: ChromaVectorStore, embedder: LocalEmbedder) -> None:
    texts = [
        "Dr. Okafor is my dentist",
        "I go swimming on Tuesdays",
        "My sister lives in Lisbon",
        "The dentist said to floss more",
    ]
    ids = add(store, [(embedder.embed(t), payload("alice", t)) for t in texts])
    query = "Who is Okafor?"
    items = by_id(store.candidates("alice", embedder.embed(query, "search"), query, 2, None))
    assert ids[0] in items and items[ids[0]].keyword == 1.0
    assert items[ids[0]].semantic == pytest.approx(
        float(np.dot(embedder.embed(texts[0]), embedder.embed(query, "search"))), abs=1e-4
    )


# --- other layouts, other embedders, outages -------------------------------------------------------
def test_an_l2_user_collection_still_gives_cosines(store: ChromaVectorStore, client: chromadb.api.ClientAPI) -> None:
    client.create_collection(store.user_collection_name("alice"), embedding_function=None)  # Chroma's default: l2
    q = unit(40)
    (memory_id,) = add(store, [(at_cosine(q, 0.6, 401), payload("alice", "a walk by the river"))])
    found = store.candidates("alice", q.tolist(), "unrelated words", 5, None)
    assert found.items[0].id == memory_id
    assert found.items[0].semantic == pytest.approx(0.6, abs=1e-4)
    assert store.search("q", q.tolist(), 5, {"user_id": "alice"})[0].score == pytest.approx(0.6, abs=1e-4)


def test_migrate_moves_the_single_collection_layout(
    store: ChromaVectorStore, client: chromadb.api.ClientAPI, mem0_ready: None
) -> None:
    from mem0.vector_stores.chroma import ChromaDB

    legacy = ChromaDB(collection_name=store.collection_name, client=client)  # what the service wrote before
    q = unit(50)
    rows = [
        ("alice", "Third, in time", 30, at_cosine(q, 0.1, 501)),
        ("alice", "First, in time", 10, at_cosine(q, 0.2, 502)),
        ("bob", "Bob's only memory", 5, at_cosine(q, 0.3, 503)),
        ("alice", "Second, in time", 20, at_cosine(q, 0.4, 504)),
    ]
    ids = [str(uuid.uuid4()) for _ in rows]
    legacy.insert([r[3] for r in rows], [payload(r[0], r[1], r[2]) for r in rows], ids)

    assert store.count_user("alice") == 0  # not searched until moved
    with pytest.raises(ConfigurationProblem, match=r"tools\.ops\.migrate_store"):  # a worker refuses to start on it
        ChromaVectorStore(client, store.collection_name, DIMS)
    store = ChromaVectorStore(client, store.collection_name, DIMS, allow_legacy=True)  # what the command opens
    assert store.migrate() == 4
    assert store.migrate() == 0  # a re-run moves nothing twice
    order = sorted(store.list_user("alice"), key=lambda h: h.payload[SEQ_KEY])
    assert [h.payload["data"] for h in order] == ["First, in time", "Second, in time", "Third, in time"]
    assert store.get(ids[2]) is not None and store.count_user("bob") == 1
    found = by_id(store.candidates("alice", q.tolist(), "time", 5, None))
    assert found[ids[3]].semantic == pytest.approx(0.4, abs=1e-4) and found[ids[3]].keyword == 1.0
    client.delete_collection(store.collection_name)


def test_reanalyse_rewrites_stale_documents(store: ChromaVectorStore, client: chromadb.api.ClientAPI) -> None:
    q = unit(55)
    ids = add(store, [(at_cosine(q, 0.5, 551), payload("alice", "Tango lessons on Friday"))])
    collection = client.get_collection(store.user_collection_name("alice"), embedding_function=None)
    collection.update(ids=ids, embeddings=[at_cosine(q, 0.5, 551)], documents=[" an older analysis "])
    assert not store.candidates("alice", q.tolist(), "tango", 5, None).items[0].keyword
    assert store.reanalyse() == 1 and store.reanalyse() == 0
    (hit,) = store.candidates("alice", q.tolist(), "tango", 5, None).items
    assert hit.keyword == 1.0 and hit.semantic == pytest.approx(0.5, abs=1e-4)


def test_a_reset_by_another_worker_leaves_this_one_working(
    store: ChromaVectorStore, chroma_server: ChromaServer
) -> None:
    add(store, [(unit(56).tolist(), payload("alice", "before the reset"))])
    assert store.count_user("alice") == 1
    # another worker: its own client and adapter on the same collections
    other = ChromaVectorStore(
        chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port), store.collection_name, DIMS
    )
    other.reset()  # drops the collections this worker holds handles to
    assert store.count_user("alice") == 0 and store.get(str(uuid.uuid4())) is None
    (memory_id,) = add(store, [(unit(57).tolist(), payload("alice", "after the reset"))])
    hit = store.get(memory_id)
    assert hit is not None and hit.payload[SEQ_KEY] == 0
    assert other.count_user("alice") == 1


def test_delete_col_leaves_other_stores_alone(store: ChromaVectorStore, client: chromadb.api.ClientAPI) -> None:
    neighbour = ChromaVectorStore(client, f"{store.collection_name}__ux", DIMS)  # a name that shares a prefix
    try:
        add(neighbour, [(unit(58).tolist(), payload("alice", "the neighbour's"))])
        add(store, [(unit(59).tolist(), payload("alice", "mine"))])
        store.delete_col()
        assert neighbour.count_user("alice") == 1
        store.reset()  # the fixture deletes it again afterwards
    finally:
        neighbour.delete_col()


def test_another_embedders_store_is_refused(store: ChromaVectorStore, client: chromadb.api.ClientAPI) -> None:
    with pytest.raises(ConfigurationProblem, match="384-dimension"):
        ChromaVectorStore(client, store.collection_name, 768)


def test_an_outage_raises_and_heals(store: ChromaVectorStore, chroma_server: ChromaServer) -> None:
    (memory_id,) = add(store, [(unit(60).tolist(), payload("alice", "before the outage"))])
    with chroma_server.outage():
        with pytest.raises(Exception) as failure:  # the client library's own error, for the service to map
            store.ping()
        assert not isinstance(failure.value, ValueError | AssertionError)
        with pytest.raises(Exception):  # noqa: B017 - any transport error; nothing is swallowed
            store.candidates("alice", unit(60).tolist(), "outage", 5, None)
    assert store.ping()["kind"] == "chroma"
    assert store.get(memory_id) is not None


def test_the_migration_command_moves_the_old_layout(
    client: chromadb.api.ClientAPI, chroma_server: ChromaServer, mem0_ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mem0.vector_stores.chroma import ChromaDB

    from shared.settings import get_settings
    from tools.ops.migrate_store import main

    name = f"old-{uuid.uuid4().hex[:8]}"
    legacy = ChromaDB(collection_name=name, client=client)
    legacy.insert([at_cosine(unit(60), 0.5, 601)], [payload("carol", "An old memory", 10)], [str(uuid.uuid4())])
    env = {"VECTOR_STORE": "chroma", "CHROMA_HOST": chroma_server.host, "CHROMA_PORT": str(chroma_server.port)}
    for key, value in {**env, "COLLECTION_NAME": name}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        assert main([]) == 0
        store = ChromaVectorStore(client, name, DIMS, allow_legacy=True)
        assert [h.payload["data"] for h in store.list_user("carol")] == ["An old memory"]
    finally:
        get_settings.cache_clear()
        client.delete_collection(name)
        ChromaVectorStore(client, name, DIMS).delete_col()
