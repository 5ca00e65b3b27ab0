"""Graph memory (shared/graph/) against a real Neo4j 5.26, with the LLM served by the fake OpenAI
server over HTTP and the real local embedder (all-MiniLM-L6-v2 on ONNX Runtime).

Each test works on user ids of its own, so the session's shared Neo4j never mixes test data; the
outage test takes that server down and brings it back with `neo4j_server.outage()`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pkgutil import iter_modules
from typing import Any

import pytest
from neo4j import GraphDatabase

from shared import graph as graph_package
from shared.ai.embeddings import LocalEmbedder
from shared.ai.llm import build_chat_model
from shared.errors import BackendUnavailable
from shared.graph import (
    EXTRACTION_PROMPT_MARKER,
    GraphStore,
    GraphUnavailable,
    build_graph_store,
    format_relations,
    match_key,
    name_key,
    normalise_relation_type,
    quantise,
    query_match_text,
)
from shared.graph import cypher as cypher_module
from shared.graph import extraction as extraction_module
from shared.settings import Settings
from tests.fixtures.harness import neo4j_server  # noqa: F401 - registers the fixture
from tests.helpers import local_model_path
from tools.harness.fake_openai import FakeOpenAIServer
from tools.harness.neo4j_server import Neo4jServer

# --- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2", local_model_path(), 384, 1)


@pytest.fixture
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def graph_settings(server: Neo4jServer, llm: FakeOpenAIServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "graph_store": "neo4j",
        "neo4j_uri": server.uri,
        "neo4j_username": server.user,
        "neo4j_password": server.password,
        "llm_provider": "openai",
        "openai_base_url": llm.base_url,
        "openai_api_key": "test-key",
        "llm_max_retries": 0,
        "llm_timeout_seconds": 10,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_store(neo4j_server: Neo4jServer, llm: FakeOpenAIServer, embedder: LocalEmbedder):  # noqa: F811
    stores: list[GraphStore] = []

    def make(settings: Settings | None = None, **options: Any) -> GraphStore:
        settings = settings or graph_settings(neo4j_server, llm)
        store = GraphStore(settings, embedder, build_chat_model(settings), **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store) -> GraphStore:
    return make_store()


@pytest.fixture
def new_user(store: GraphStore) -> Iterator[Callable[[str], str]]:
    """Unique user ids for this test (`new_user("alice")` -> "alice-1a2b3c"), deleted afterwards."""
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make
    for user_id in made:
        store.delete_user(user_id)


def rel(source: str, relation: str, target: str) -> dict[str, str]:
    return {"source": source, "relation": relation, "target": target}


def extraction(
    entities: Sequence[tuple[str, str]] = (),
    relations: Sequence[dict[str, str]] = (),
    invalidates: Sequence[str] = (),
) -> dict[str, Any]:
    """An LLM answer in the shape the extraction prompt asks for."""
    return {
        "entities": [{"name": n, "type": t} for n, t in entities],
        "relations": list(relations),
        "invalidates": list(invalidates),
    }


def answer_next_extraction(llm: FakeOpenAIServer, reply: Any) -> None:
    llm.when(EXTRACTION_PROMPT_MARKER, role="system", reply=reply, times=1)


def write(store: GraphStore, llm: FakeOpenAIServer, user_id: str, reply: Any, memory_ids=("m",), text="text"):
    answer_next_extraction(llm, reply)
    return store.extract_and_store(user_id, text, list(memory_ids))


def existing_relations(prompt: str) -> list[dict[str, str]]:
    """The existing relations the extraction prompt showed the LLM (one JSON object per line)."""
    return [json.loads(line) for line in prompt.splitlines() if line.startswith('{"ref"')]


def triples(relations: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(r["source"], r["relationship"], r["destination"]) for r in relations}


def edge_triples(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["source_name"], e["relationship"], e["target_name"]) for e in graph["edges"]}


def cypher(server: Neo4jServer, query: str, **params: Any) -> list[dict[str, Any]]:
    """A direct read, to check what is really in the database (not what the store says)."""
    with GraphDatabase.driver(server.uri, auth=server.auth) as driver:
        records, _, _ = driver.execute_query(query, params)
        return [r.data() for r in records]


# --- normalisation (no database) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("likes", "LIKES"), ("is a", "IS_A"), ("Lives-In", "LIVES_IN"), (" works_at ", "WORKS_AT"), ("café", "CAFE")],
)
def test_relation_types_are_normalised_to_upper_snake(raw: str, expected: str) -> None:
    assert normalise_relation_type(raw) == expected


@pytest.mark.parametrize("raw", ["喜欢", "!!!", "", "X" * 51])
def test_relation_types_that_cannot_be_normalised_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalise_relation_type(raw)


def test_names_match_queries_on_word_boundaries_or_as_cjk_substrings() -> None:
    assert name_key("  Interstellar\tFILM ") == "interstellar film"
    al, film = match_key("Al"), match_key("星际穿越")
    assert al == " al " and film == "星际穿越"
    assert al not in query_match_text("I also like it") and al in query_match_text("What does Al like?")
    assert film in query_match_text("我喜欢《星际穿越》")
    assert match_key("{}") is None  # nothing to match on: found by similarity only


def test_quantised_vectors_keep_cosines(embedder: LocalEmbedder) -> None:
    import numpy as np

    vectors = np.array(embedder.embed_batch(["Interstellar (film)", "Paris (city)", "my dog Rex"]), np.float32)
    query = np.array(embedder.embed("what films do I like"), np.float32)
    exact = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
    approx = extraction_module._cosines([quantise(v) for v in vectors], query / np.linalg.norm(query))
    assert np.max(np.abs(exact - approx)) < 0.005


# --- write and read --------------------------------------------------------------------------------


def test_extracted_relations_are_stored_searchable_and_inspectable(store, llm, new_user) -> None:
    alice = new_user("alice")
    result = write(
        store,
        llm,
        alice,
        extraction(
            [("Interstellar", "film"), ("sci-fi film", "genre")],
            [rel(alice, "likes", "Interstellar"), rel("Interstellar", "is a", "sci-fi film")],
        ),
        memory_ids=["m1"],
        text="I love Interstellar, a sci-fi film",
    )
    assert result.status == "written"
    assert (result.entities_created, result.relations_created, result.relations_invalidated) == (3, 2, 0)

    # One JSON-mode call, nothing Azure OpenAI would reject (no tools, no function calling).
    (request,) = llm.chat_requests()
    assert request.json["response_format"] == {"type": "json_object"}
    assert not {"tools", "tool_choice", "functions", "function_call", "parallel_tool_calls"} & set(request.json)
    assert json.dumps(alice) in request.messages[0]["content"]
    assert request.messages[1] == {"role": "user", "content": "I love Interstellar, a sci-fi film"}

    found = store.search(alice, "what films do I like?")
    assert (alice, "LIKES", "Interstellar") in triples(found)
    likes = next(r for r in found if r["relationship"] == "LIKES")
    assert likes["memory_ids"] == ["m1"] and likes["destination_type"] == "film" and likes["score"] > 0.3
    assert set(likes) == {
        "id", "source", "source_type", "relationship", "destination", "destination_type",
        "memory_ids", "created_at", "updated_at", "score",
    }  # fmt: skip
    assert f"- {alice} -[LIKES]-> Interstellar" in format_relations(found)
    # Named in the query: found whatever the similarity.
    assert triples(store.search(alice, "Interstellar")) == {
        (alice, "LIKES", "Interstellar"),
        ("Interstellar", "IS_A", "sci-fi film"),
    }
    assert store.search(alice, "what is the capital of Peru") == []

    graph = store.user_graph(alice)
    assert sorted(n["name"] for n in graph["nodes"]) == sorted([alice, "Interstellar", "sci-fi film"])
    assert edge_triples(graph) == {(alice, "LIKES", "Interstellar"), ("Interstellar", "IS_A", "sci-fi film")}
    assert graph["truncated"] is False
    node_ids = {n["id"] for n in graph["nodes"]}
    assert all(e["source"] in node_ids and e["target"] in node_ids for e in graph["edges"])
    assert "vector" not in json.dumps(graph)


def test_the_next_extraction_sees_the_users_relations_and_restating_adds_support(store, llm, new_user) -> None:
    alice = new_user("alice")
    write(store, llm, alice, extraction([("Paris", "city")], [rel("I", "LIVES_IN", "Paris")]), ["m1"])
    result = write(
        store, llm, alice, extraction(relations=[rel(alice, "lives in", "Paris")]), ["m2"], "I live in Paris"
    )

    shown = existing_relations(llm.chat_requests()[-1].messages[0]["content"])
    assert [(r["source"], r["relation"], r["target"]) for r in shown] == [(alice, "LIVES_IN", "Paris")]
    assert (result.relations_created, result.relations_supported) == (0, 1)
    (edge,) = store.user_graph(alice)["edges"]
    assert edge["memory_ids"] == ["m1", "m2"]


def test_entity_names_are_per_user_nodes_and_no_read_path_mixes_users(store, llm, new_user, neo4j_server) -> None:  # noqa: F811
    alice, bob = new_user("alice"), new_user("bob")
    same = extraction(
        [("Interstellar", "film"), ("Paris", "city")],
        [rel("I", "LIKES", "Interstellar"), rel("I", "LIVES_IN", "Paris"), rel("Interstellar", "IS_A", "film")],
    )
    write(store, llm, alice, same, ["alice-m1"])
    write(store, llm, bob, same, ["bob-m1"])
    write(store, llm, alice, extraction([("Tenet", "film")], [rel("I", "LIKES", "Tenet")]), ["alice-m2"])
    write(store, llm, bob, extraction([("Dune", "film")], [rel("I", "LIKES", "Dune")]), ["bob-m2"], "I like Tenet")

    # Equal names are distinct nodes, and no relationship joins two users.
    rows = cypher(
        neo4j_server,
        "MATCH (e:MemoryEntity {name_key: 'interstellar'}) WHERE e.user_id IN $users RETURN e.user_id AS u",
        users=[alice, bob],
    )
    assert sorted(r["u"] for r in rows) == sorted([alice, bob])
    crossing = cypher(
        neo4j_server,
        "MATCH (a:MemoryEntity)-[r]-(b:MemoryEntity) WHERE a.user_id IN $users "
        "AND (b.user_id <> a.user_id OR r.user_id <> a.user_id) RETURN count(r) AS n",
        users=[alice, bob],
    )
    assert crossing == [{"n": 0}]

    # Search: alice never sees bob's relations, with equal or unique names.
    for query in ("Interstellar", "what films do I like", "Dune", "where do I live", bob):
        for relation in store.search(alice, query, 50):
            assert all(m.startswith("alice-") for m in relation["memory_ids"]), (query, relation)
            assert "Dune" not in (relation["source"], relation["destination"]) and bob != relation["source"]
    assert "Dune" not in json.dumps(store.search(alice, "Dune", 50))
    assert "Tenet" not in json.dumps(store.search(bob, "Tenet"))

    # The extraction prompt of bob's turn about Tenet listed bob's relations only.
    bob_prompt = llm.chat_requests()[-1].messages[0]["content"]
    assert "Tenet" not in json.dumps(existing_relations(bob_prompt)) and alice not in bob_prompt

    # The inspection graph.
    alice_graph, bob_graph = store.user_graph(alice, include_history=True), store.user_graph(bob, include_history=True)
    assert {n["name"] for n in alice_graph["nodes"]} == {alice, "Interstellar", "Paris", "film", "Tenet"}
    assert {n["name"] for n in bob_graph["nodes"]} == {bob, "Interstellar", "Paris", "film", "Dune"}
    assert not {n["id"] for n in alice_graph["nodes"]} & {n["id"] for n in bob_graph["nodes"]}
    assert all(m.startswith("alice-") for e in alice_graph["edges"] for m in e["memory_ids"])

    # Deleting a memory id of one user never touches the other's, even with an equal id.
    write(store, llm, bob, extraction(relations=[rel("I", "OWNS", "Rex")]), ["same-id"])
    write(store, llm, alice, extraction(relations=[rel("I", "OWNS", "Rex")]), ["same-id"])
    assert store.delete_memory(alice, "same-id") == 1
    assert (bob, "OWNS", "Rex") in edge_triples(store.user_graph(bob))

    # Deleting a user removes that user's graph and nothing else.
    bob_before = store.user_graph(bob, include_history=True)
    alice_nodes = len(store.user_graph(alice)["nodes"])
    assert alice_nodes == 5  # alice, Interstellar, Paris, film, Tenet (Rex left with "same-id")
    assert store.delete_user(alice) == alice_nodes
    assert store.user_graph(alice, include_history=True) == {"nodes": [], "edges": [], "truncated": False}
    assert store.user_graph(bob, include_history=True) == bob_before


def test_a_contradiction_replaces_the_relation_and_keeps_it_as_history(store, llm, new_user) -> None:
    alice = new_user("alice")
    write(store, llm, alice, extraction([("Paris", "city")], [rel("I", "LIVES_IN", "Paris")]), ["m1"])

    def moved(request: dict[str, Any]) -> dict[str, Any]:
        # What a model does: find the relation the new statement makes false among those it was shown.
        shown = existing_relations(request["messages"][0]["content"])
        paris = next(r["ref"] for r in shown if r["target"] == "Paris")
        return extraction([("Berlin", "city")], [rel("I", "LIVES_IN", "Berlin")], [paris])

    result = write(store, llm, alice, moved, ["m2"], "I moved to Berlin last month")
    assert (result.relations_invalidated, result.relations_created) == (1, 1)

    assert triples(store.search(alice, "where do I live")) == {(alice, "LIVES_IN", "Berlin")}
    assert "Paris" not in json.dumps(store.search(alice, "Paris"))
    assert edge_triples(store.user_graph(alice)) == {(alice, "LIVES_IN", "Berlin")}
    history = store.user_graph(alice, include_history=True)["edges"]
    old = next(e for e in history if e["target_name"] == "Paris")
    assert old["valid"] is False and old["invalidated_at"] and old["memory_ids"] == ["m1"]
    # Invalidated relations are not offered to the LLM again.
    write(store, llm, alice, extraction(), ["m3"], "I live in Berlin")
    shown = existing_relations(llm.chat_requests()[-1].messages[0]["content"])
    assert [r["target"] for r in shown] == ["Berlin"]


def test_invalidating_a_relation_while_restating_it_keeps_it(store, llm, new_user) -> None:
    alice = new_user("alice")
    write(store, llm, alice, extraction(relations=[rel("I", "LIKES", "tea")]), ["m1"])

    def confused(request: dict[str, Any]) -> dict[str, Any]:
        (shown,) = existing_relations(request["messages"][0]["content"])
        return extraction(relations=[rel("I", "LIKES", "tea")], invalidates=[shown["ref"]])

    result = write(store, llm, alice, confused, ["m2"])
    assert result.relations_invalidated == 0
    (edge,) = store.user_graph(alice, include_history=True)["edges"]
    assert edge["valid"] and edge["memory_ids"] == ["m1", "m2"]


def test_revert_write_undoes_one_turn(store, llm, new_user) -> None:
    alice = new_user("alice")
    write(store, llm, alice, extraction([("Paris", "city")], [rel("I", "LIVES_IN", "Paris")]), ["m1"])
    before = store.user_graph(alice, include_history=True)

    def moved(request: dict[str, Any]) -> dict[str, Any]:
        (shown,) = existing_relations(request["messages"][0]["content"])
        return extraction([("Berlin", "city")], [rel("I", "LIVES_IN", "Berlin")], [shown["ref"]])

    result = write(store, llm, alice, moved, ["m2"])
    store.revert_write(alice, result)
    after = store.user_graph(alice, include_history=True)
    assert edge_triples(after) == {(alice, "LIVES_IN", "Paris")}
    assert [n["name"] for n in after["nodes"]] == [n["name"] for n in before["nodes"]]
    assert all("m2" not in n["memory_ids"] for n in after["nodes"])
    (edge,) = after["edges"]
    assert edge["valid"] and edge["invalidated_at"] is None


# --- deletion --------------------------------------------------------------------------------------


def test_deleting_a_memory_removes_only_the_relations_it_alone_supported(store, llm, new_user) -> None:
    alice = new_user("alice")
    write(
        store,
        llm,
        alice,
        extraction(
            [("Interstellar", "film"), ("sci-fi film", "genre")],
            [rel("I", "LIKES", "Interstellar"), rel("Interstellar", "IS_A", "sci-fi film")],
        ),
        ["m1"],
    )
    write(
        store,
        llm,
        alice,
        extraction([("Rex", "dog")], [rel("I", "LIKES", "Interstellar"), rel("I", "HAS_PET", "Rex")]),
        ["m2"],
    )

    assert store.delete_memory(alice, "m1") == 1  # IS_A; LIKES is still supported by m2
    graph = store.user_graph(alice)
    assert edge_triples(graph) == {(alice, "LIKES", "Interstellar"), (alice, "HAS_PET", "Rex")}
    assert {n["name"] for n in graph["nodes"]} == {alice, "Interstellar", "Rex"}  # "sci-fi film" went with IS_A
    assert "IS_A" not in json.dumps(store.search(alice, "sci-fi film"))

    assert store.delete_memory(alice, "m2") == 2
    assert store.user_graph(alice, include_history=True) == {"nodes": [], "edges": [], "truncated": False}
    assert store.delete_memory(alice, "m2") == 0  # idempotent


def test_history_supported_only_by_a_deleted_memory_is_deleted_too(store, llm, new_user) -> None:
    alice = new_user("alice")
    write(store, llm, alice, extraction(relations=[rel("I", "LIVES_IN", "Paris")]), ["m1"])

    def moved(request: dict[str, Any]) -> dict[str, Any]:
        (shown,) = existing_relations(request["messages"][0]["content"])
        return extraction(relations=[rel("I", "LIVES_IN", "Berlin")], invalidates=[shown["ref"]])

    write(store, llm, alice, moved, ["m2"])
    assert store.delete_memory(alice, "m1") == 1
    assert edge_triples(store.user_graph(alice, include_history=True)) == {(alice, "LIVES_IN", "Berlin")}


def test_user_deletion_is_batched_and_complete(store, llm, new_user, neo4j_server) -> None:  # noqa: F811
    alice, carol = new_user("alice"), new_user("carol")
    many = extraction([(f"thing {i}", "thing") for i in range(12)], [rel("I", "OWNS", f"thing {i}") for i in range(12)])
    write(store, llm, alice, many, ["m1"])
    write(store, llm, carol, extraction(relations=[rel("I", "OWNS", "thing 1")]), ["m1"])
    assert store.delete_user(alice, batch=5) == 13
    assert cypher(neo4j_server, "MATCH (e:MemoryEntity {user_id: $u}) RETURN count(e) AS n", u=alice) == [{"n": 0}]
    assert edge_triples(store.user_graph(carol)) == {(carol, "OWNS", "thing 1")}
    assert store.delete_user(alice) == 0


# --- safety ----------------------------------------------------------------------------------------

NASTY = [
    "Robert'); MATCH (n) DETACH DELETE n; //",
    'He said "hi" `backtick` {braces} $param',
    "}]->(x) WITH x CALL db.labels() YIELD label RETURN label //",
    "MERGE (a)-[:OWNS]->(b) RETURN * UNION MATCH (m) RETURN m",
    "back\\slash \\' \\\" ${injection} {{double}}",
]


def test_injection_strings_are_stored_verbatim_and_break_nothing(store, llm, new_user, neo4j_server) -> None:  # noqa: F811
    bystander = new_user("bystander")
    write(store, llm, bystander, extraction(relations=[rel("I", "LIKES", "tea")]), ["b1"])
    nasty_user = new_user("o'hara\"}) DETACH DELETE n //`")
    reply = extraction(
        [(name, "thing") for name in NASTY],
        [rel("I", "LIKES`]->() DETACH DELETE r //", name) for name in NASTY],
    )
    result = write(store, llm, nasty_user, reply, ["n1"], text=" ".join(NASTY))
    assert result.status == "written" and result.relations_created == len(NASTY)

    graph = store.user_graph(nasty_user)
    assert {n["name"] for n in graph["nodes"]} == {nasty_user, *NASTY}
    assert {e["relationship"] for e in graph["edges"]} == {"LIKES_DETACH_DELETE_R"}
    for name in NASTY:
        found = store.search(nasty_user, name, 20)
        assert (nasty_user, "LIKES_DETACH_DELETE_R", name) in triples(found), name
    assert edge_triples(store.user_graph(bystander)) == {(bystander, "LIKES", "tea")}
    assert cypher(neo4j_server, "MATCH (e:MemoryEntity {user_id: $u}) RETURN count(e) AS n", u=bystander) == [{"n": 2}]

    assert store.delete_memory(nasty_user, NASTY[0]) == 0
    assert store.delete_user(nasty_user) == len(NASTY) + 1
    assert edge_triples(store.user_graph(bystander)) == {(bystander, "LIKES", "tea")}


def test_every_statement_is_a_literal_without_plugins() -> None:
    modules = [
        graph_package,
        *(importlib.import_module(f"shared.graph.{m.name}") for m in iter_modules(graph_package.__path__)),
    ]
    source = "".join(inspect.getsource(module) for module in modules)
    assert "apoc." not in source.lower() and "gds." not in source.lower()
    statements = [v for k, v in vars(cypher_module).items() if k.isupper() and isinstance(v, str) and "MATCH" in v]
    assert len(statements) >= 10
    for module in modules:  # the statements live in cypher.py, apart from the code that runs them
        assert module is cypher_module or "MATCH (" not in inspect.getsource(module), module
    for statement in statements:
        # Values reach Cypher only as $parameters; no str.format/f-string slots are left in a statement.
        assert not re.search(r"(?<!\{)\{[a-z_]+\}(?!\})", statement), statement


MALFORMED = {
    "not JSON": "Sure! alice likes Interstellar.",
    "a JSON array": "[1, 2, 3]",
    "entities not a list": {"entities": "Interstellar"},
    "relation without target": {"relations": [{"source": "a", "relation": "LIKES"}]},
    "name not a string": {"relations": [{"source": 1, "relation": "LIKES", "target": "b"}]},
    "relation type not English": {"relations": [rel("a", "喜欢", "b")]},
    "relation type too long": {"relations": [rel("a", "R" * 60, "b")]},
    "name too long": {"entities": [{"name": "x" * 201, "type": "thing"}]},
    "blank name": {"entities": [{"name": "   ", "type": "thing"}]},
    "control character": {"entities": [{"name": "bad\u0000name", "type": "thing"}]},
    "too many relations": {"relations": [rel("a", "LIKES", f"b{i}") for i in range(31)]},
    "unknown invalidation": {"relations": [rel("a", "LIKES", "b")], "invalidates": ["R99"]},
}


@pytest.mark.parametrize("reply", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_llm_output_is_rejected_logged_and_nothing_written(store, llm, new_user, caplog, reply) -> None:
    alice = new_user("alice")
    with caplog.at_level(logging.WARNING, logger="shared.graph"):
        result = write(store, llm, alice, reply, ["m1"])
    assert result.status == "rejected" and result.reason
    assert "graph extraction rejected" in caplog.text
    assert store.user_graph(alice, include_history=True) == {"nodes": [], "edges": [], "truncated": False}


def test_fenced_json_and_extra_keys_are_accepted(store, llm, new_user) -> None:
    alice = new_user("alice")
    payload = {**extraction(relations=[rel("I", "LIKES", "tea")]), "reasoning": "the user said so"}
    result = write(store, llm, alice, "```json\n" + json.dumps(payload) + "\n```", ["m1"])
    assert result.status == "written"
    assert edge_triples(store.user_graph(alice)) == {(alice, "LIKES", "tea")}


def test_an_empty_extraction_writes_nothing(store, llm, new_user) -> None:
    alice = new_user("alice")
    assert write(store, llm, alice, extraction(), ["m1"]).status == "empty"
    assert store.extract_and_store(alice, "   ", ["m1"]).status == "empty"
    assert len(llm.chat_requests()) == 1  # blank text costs no LLM call
    assert store.user_graph(alice)["nodes"] == []


def test_works_with_azure_openai(make_store, llm, new_user, neo4j_server) -> None:  # noqa: F811
    settings = graph_settings(
        neo4j_server,
        llm,
        llm_provider="azure_openai",
        azure_openai_endpoint=llm.url,
        azure_openai_api_key="azure-key",
        azure_openai_deployment="gpt-4o-mini",
    )
    store = make_store(settings)
    alice = new_user("alice")
    result = write(store, llm, alice, extraction(relations=[rel("I", "LIKES", "tea")]), ["m1"])
    assert result.status == "written"
    (request,) = llm.chat_requests()
    assert (request.style, request.deployment, request.status) == ("azure", "gpt-4o-mini", 200)
    assert request.json["response_format"] == {"type": "json_object"} and "tools" not in request.json


# --- failures --------------------------------------------------------------------------------------


def test_an_llm_outage_fails_the_write_and_writes_nothing(store, llm, new_user) -> None:
    alice = new_user("alice")
    llm.down()
    with pytest.raises(BackendUnavailable) as raised:
        store.extract_and_store(alice, "I like tea", ["m1"])
    assert raised.value.backend == "llm"
    assert store.user_graph(alice)["nodes"] == []


def test_neo4j_down_degrades_reads_fails_writes_and_the_first_call_after_is_served(
    make_store,
    llm,
    new_user,
    neo4j_server,  # noqa: F811
) -> None:
    store = make_store(connection_timeout=1.0, max_retry_time=1.0)
    alice = new_user("alice")
    write(store, llm, alice, extraction([("Paris", "city")], [rel("I", "LIVES_IN", "Paris")]), ["m1"])
    llm_calls = len(llm.chat_requests())

    with neo4j_server.outage():
        with pytest.raises(GraphUnavailable) as raised:
            store.search(alice, "where do I live")
        assert raised.value.status == 503 and raised.value.backend == "graph"
        assert store.breaker.is_open

        # Open: each call is a trial (a connectivity check first), which finds Neo4j still down.
        degraded = store.search_safe(alice, "where do I live")
        assert degraded.relations == [] and degraded.warning and degraded.warning["code"] == "graph_unavailable"

        # Writes are reported, never dropped silently, and no LLM call is spent on them.
        with pytest.raises(GraphUnavailable):
            store.extract_and_store(alice, "I moved to Berlin", ["m2"])
        assert len(llm.chat_requests()) == llm_calls
        for call in (lambda: store.user_graph(alice), lambda: store.delete_memory(alice, "m1")):
            with pytest.raises(GraphUnavailable):
                call()
        assert store.health()["status"] == "down"
        assert store.breaker.is_open

    # The harness returns once a real Bolt login works: the very next call is served, no waiting.
    result = store.search_safe(alice, "where do I live")
    assert result.warning is None
    assert triples(result.relations) == {(alice, "LIVES_IN", "Paris")}  # the data survived the outage
    assert not store.breaker.is_open
    assert store.health()["status"] == "ok"
    write(store, llm, alice, extraction(relations=[rel("I", "LIKES", "tea")]), ["m3"])
    assert (alice, "LIKES", "tea") in edge_triples(store.user_graph(alice))


def test_an_open_breaker_refuses_calls_while_a_trial_runs_and_health_closes_it(
    make_store,
    llm,
    new_user,
    neo4j_server,  # noqa: F811
) -> None:
    from shared.breaker import Admission

    store = make_store()
    alice = new_user("alice")
    write(store, llm, alice, extraction([("Paris", "city")], [rel("I", "LIVES_IN", "Paris")]), ["m1"])
    store.breaker.failed()  # as if a call had just found Neo4j down
    trial = store.breaker.admit()  # another request's trial, still under way
    assert trial is Admission.TRIAL
    # Neo4j is up, so a call that reached it would succeed: being refused proves none was made.
    with pytest.raises(GraphUnavailable):
        store.search(alice, "where do I live")
    with pytest.raises(GraphUnavailable):
        store.user_graph(alice)
    store.breaker.record(trial, reached=None)  # that trial ended without learning anything
    assert triples(store.search(alice, "where do I live")) == {(alice, "LIVES_IN", "Paris")}  # the next is the trial
    assert not store.breaker.is_open

    store.breaker.failed()
    assert store.health()["status"] == "ok"
    assert not store.breaker.is_open


# --- lifecycle and schema --------------------------------------------------------------------------


def test_construction_does_no_io_and_none_means_no_store(llm, embedder) -> None:
    assert build_graph_store(Settings(graph_store="none"), embedder, None) is None
    from tools.harness.ports import free_port

    settings = Settings(graph_store="neo4j", neo4j_uri=f"bolt://127.0.0.1:{free_port()}", neo4j_password="x" * 8)
    store = build_graph_store(settings, embedder, None)
    assert store is not None and store._driver.peek() is None  # nothing built, nothing connected
    assert store.health()["status"] == "down"
    store.close()
    store.close()


def test_schema_is_created_idempotently_and_enforces_one_node_per_name(make_store, neo4j_server) -> None:  # noqa: F811
    for _ in range(2):
        store = make_store()
        store.ensure_schema()
        store.ensure_schema()
    constraints = {r["name"] for r in cypher(neo4j_server, "SHOW CONSTRAINTS YIELD name RETURN name")}
    indexes = {r["name"] for r in cypher(neo4j_server, "SHOW INDEXES YIELD name RETURN name")}
    assert {"memory_entity_user_name", "memory_entity_id"} <= constraints
    assert {"memory_entity_user", "memory_relation_id"} <= indexes
    user = f"schema-{uuid.uuid4().hex[:8]}"
    create = "CREATE (:MemoryEntity {user_id: $u, name_key: 'x', id: $id})"
    cypher(neo4j_server, create, u=user, id=uuid.uuid4().hex)
    with pytest.raises(Exception, match="already exists"):
        cypher(neo4j_server, create, u=user, id=uuid.uuid4().hex)
    cypher(neo4j_server, "MATCH (e:MemoryEntity {user_id: $u}) DELETE e", u=user)


def test_concurrent_writes_of_the_same_facts_make_one_node_and_one_relation(store, llm, new_user) -> None:
    from concurrent.futures import ThreadPoolExecutor

    alice = new_user("alice")
    llm.when(
        EXTRACTION_PROMPT_MARKER,
        role="system",
        reply=extraction([("Interstellar", "film")], [rel("I", "LIKES", "Interstellar")]),
    )
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: store.extract_and_store(alice, "I like Interstellar", [f"m{i}"]), range(6)))
    assert [r.status for r in results] == ["written"] * 6
    graph = store.user_graph(alice)
    assert sorted(n["name"] for n in graph["nodes"]) == sorted([alice, "Interstellar"])
    (edge,) = graph["edges"]
    assert sorted(edge["memory_ids"]) == [f"m{i}" for i in range(6)]


# --- through the service: dev host, chat agent, HTTP ----------------------------------------------


@pytest.mark.e2e
def test_chat_learns_relations_that_the_next_prompt_search_and_graph_endpoint_show(
    tmp_path,
    neo4j_server,  # noqa: F811
    llm,
) -> None:
    from tests.helpers import DevHost

    env = {
        "GRAPH_STORE": "neo4j",
        "NEO4J_URI": neo4j_server.uri,
        "NEO4J_USERNAME": neo4j_server.user,
        "NEO4J_PASSWORD": neo4j_server.password,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test",
        "LLM_MAX_RETRIES": "0",
    }
    host = DevHost(tmp_path / "data", env, name="graph-devhost").start()
    api = host.client
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    try:
        # Turn 1 of each user: the answer, mem0's extraction (one memory), the graph extraction.
        for user in (alice, bob):
            answer_next_extraction(
                llm,
                extraction(
                    [("Interstellar", "film"), ("sci-fi film", "genre")],
                    [rel("I", "LIKES", "Interstellar"), rel("Interstellar", "IS_A", "sci-fi film")],
                ),
            )
            llm.when(
                match=lambda r: bool(r.get("response_format")),
                reply={"facts": ["Loves Interstellar, a sci-fi film"]},
                times=1,
            )
            reply = api.post(
                "/api/chat/message",
                json={"user_id": user, "message": "I love Interstellar, a sci-fi film", "session_id": "s1"},
            )
            assert reply.status_code == 200, reply.text

        # The graph holds it, per user.
        graph = api.get(f"/api/memory/graph/{alice}").json()["data"]
        assert edge_triples(graph) == {(alice, "LIKES", "Interstellar"), ("Interstellar", "IS_A", "sci-fi film")}
        (memory,) = api.get(f"/api/memory/user/{alice}").json()["data"]["results"]
        assert all(e["memory_ids"] == [memory["id"]] for e in graph["edges"])

        # The next turn's prompt contains alice's relations and none of bob's.
        reply = api.post("/api/chat/message", json={"user_id": alice, "message": "Which film should I rewatch?"})
        assert reply.status_code == 200, reply.text
        answer_request = [r for r in llm.chat_requests() if not r.json.get("response_format")][-1]
        data = answer_request.messages[1]["content"]  # the memory data block, after our instructions
        assert f"{alice} -[LIKES]-> Interstellar" in data and bob not in data

        # Search returns them as `relations` next to `results`.
        found = api.post("/api/memory/search", json={"user_id": alice, "query": "Interstellar"}).json()["data"]
        assert (alice, "LIKES", "Interstellar") in triples(found["relations"])
        assert all(bob not in json.dumps(r) for r in found["relations"])

        # Deleting the memory removes what only it supported; deleting a user removes only that graph.
        assert api.delete(f"/api/memory/memory/{memory['id']}?user_id={alice}").status_code == 200
        assert api.get(f"/api/memory/graph/{alice}").json()["data"]["edges"] == []
        assert api.delete(f"/api/memory/user/{bob}").status_code == 200
        assert api.get(f"/api/memory/graph/{bob}").json()["data"]["nodes"] == []
    finally:
        host.stop()
        for user in (alice, bob):
            with GraphDatabase.driver(neo4j_server.uri, auth=neo4j_server.auth) as driver:
                driver.execute_query("MATCH (e:MemoryEntity {user_id: $u}) DETACH DELETE e", u=user)
