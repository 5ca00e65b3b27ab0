"""Graph memory through the dev host: the real Neo4j (in-process, Bolt), the real memory service
and the fake LLM over HTTP. What a chat teaches ends up in the user's graph, comes back in the next
prompt and in search, never crosses users, is removed with its memory, and an outage degrades
reads and fails writes cleanly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from shared.graph import EXTRACTION_PROMPT_MARKER
from shared.memory.reconcile import EXTRACT_TAG
from tests.helpers import DevHost
from tools.harness.fake_openai import FakeOpenAIServer
from tools.harness.neo4j_server import Neo4jServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory, neo4j_server: Neo4jServer, llm: FakeOpenAIServer
) -> Iterator[DevHost]:
    env = {
        "GRAPH_STORE": "neo4j",
        "NEO4J_URI": neo4j_server.uri,
        "NEO4J_USERNAME": neo4j_server.user,
        "NEO4J_PASSWORD": neo4j_server.password,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "k",
        "LLM_MAX_RETRIES": "0",
    }
    server = DevHost(tmp_path_factory.mktemp("graph") / "data", env, name="graph-host").start()
    yield server
    server.stop()


def _graph_reply(user: str, relations: list[tuple[str, str, str]], invalidates: list[str] | None = None) -> dict:
    names = {name for s, _, t in relations for name in (s, t)}
    return {
        "entities": [{"name": n, "type": "person" if n == user else "thing"} for n in sorted(names)],
        "relations": [{"source": s, "relation": r, "target": t} for s, r, t in relations],
        "invalidates": invalidates or [],
    }


def teach(llm: FakeOpenAIServer, message: str, graph: dict, fact: str) -> None:
    """The next chat about `message`: learning extracts `fact`, the graph learns `graph`."""
    # Each rule answers once: later extraction prompts quote earlier turns of the session.
    llm.when(
        EXTRACTION_PROMPT_MARKER, role="system", match=lambda r, m=message: _last_user(r) == m, reply=graph, times=1
    )
    llm.when(
        EXTRACT_TAG,
        role="system",
        match=lambda r, m=message: m in _all_text(r),
        reply={"facts": [fact]},
        times=1,
    )


def _last_user(request: dict) -> str:
    users = [m.get("content") for m in request.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""


def _all_text(request: dict) -> str:
    return "\n".join(str(m.get("content")) for m in request.get("messages", []))


def chat(host: DevHost, user: str, message: str, session: str = "s") -> httpx.Response:
    return host.client.post("/api/chat/message", json={"user_id": user, "message": message, "session_id": session})


def edges(host: DevHost, user: str) -> set[tuple[str, str, str]]:
    data = host.client.get(f"/api/memory/graph/{user}").json()["data"]
    assert data["enabled"] is True
    return {(e["source_name"], e["relationship"], e["target_name"]) for e in data["edges"] if e["valid"]}


def test_a_chat_feeds_the_graph_the_next_prompt_and_search(host: DevHost, llm: FakeOpenAIServer) -> None:
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    said = "I love Interstellar, my favourite sci-fi film"
    teach(
        llm,
        said,
        _graph_reply(alice, [(alice, "LIKES", "Interstellar"), ("Interstellar", "IS_A", "sci-fi film")]),
        "Loves Interstellar",
    )
    assert chat(host, alice, said).status_code == 200
    assert edges(host, alice) == {(alice, "LIKES", "Interstellar"), ("Interstellar", "IS_A", "sci-fi film")}

    assert chat(host, alice, "Which Interstellar scenes should I rewatch?").status_code == 200
    answer = [r for r in llm.chat_requests(ok_only=True) if not r.json.get("response_format")][-1]
    data = answer.json["messages"][1]["content"]  # the memory data block, after our instructions
    assert f"{alice} -[LIKES]-> Interstellar" in data

    found = host.client.post("/api/memory/search", json={"user_id": alice, "query": "Interstellar"}).json()["data"]
    assert (alice, "LIKES", "Interstellar") in {
        (r["source"], r["relationship"], r["destination"]) for r in found["relations"]
    }
    assert "warnings" not in found


def test_graphs_never_mix_between_users_with_equal_names(host: DevHost, llm: FakeOpenAIServer) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    for user, film in ((alice, "Dune"), (bob, "Dune")):
        said = f"{user} says: I watched {film} twice"
        teach(
            llm,
            said,
            _graph_reply(user, [(user, "WATCHED", film), (film, "DIRECTED_BY", f"director of {user}")]),
            f"Watched {film} twice",
        )
        assert chat(host, user, said).status_code == 200
    alice_edges, bob_edges = edges(host, alice), edges(host, bob)
    assert all(alice in e or "director of " + alice in e or e[0] == "Dune" for e in alice_edges)
    assert not any(bob in str(e) for e in alice_edges) and not any(alice in str(e) for e in bob_edges)
    for user, other in ((alice, bob), (bob, alice)):
        found = host.client.post("/api/memory/search", json={"user_id": user, "query": "Dune director"}).json()
        text = str(found["data"]["relations"])
        assert other not in text and user in text


def test_deleting_a_memory_or_a_user_cascades_to_the_graph(host: DevHost, llm: FakeOpenAIServer) -> None:
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    first, second = "I live in Paris", "I play the cello"
    teach(llm, first, _graph_reply(carol, [(carol, "LIVES_IN", "Paris")]), "Lives in Paris")
    teach(llm, second, _graph_reply(carol, [(carol, "PLAYS", "cello")]), "Plays the cello")
    assert chat(host, carol, first).status_code == 200
    assert chat(host, carol, second).status_code == 200
    memories = {m["memory"]: m["id"] for m in host.client.get(f"/api/memory/user/{carol}").json()["data"]["results"]}
    assert edges(host, carol) == {(carol, "LIVES_IN", "Paris"), (carol, "PLAYS", "cello")}

    assert host.client.delete(f"/api/memory/memory/{memories['Lives in Paris']}").status_code == 200
    assert edges(host, carol) == {(carol, "PLAYS", "cello")}
    exported = host.client.get(f"/api/memory/export/{carol}").json()["data"]
    assert {e["relationship"] for e in exported["graph"]["edges"]} == {"PLAYS"}

    assert host.client.delete(f"/api/memory/user/{carol}").json()["data"] == {"deleted": 1}
    assert host.client.get(f"/api/memory/graph/{carol}").json()["data"]["nodes"] == []


def test_neo4j_outage_degrades_reads_fails_turns_cleanly_and_recovers(
    host: DevHost, llm: FakeOpenAIServer, neo4j_server: Neo4jServer
) -> None:
    dan = f"dan-{uuid.uuid4().hex[:6]}"
    teach(llm, "I drive a Volvo", _graph_reply(dan, [(dan, "DRIVES", "Volvo")]), "Drives a Volvo")
    assert chat(host, dan, "I drive a Volvo").status_code == 200
    with neo4j_server.outage():
        found = host.client.post("/api/memory/search", json={"user_id": dan, "query": "Volvo"})
        assert found.status_code == 200
        data = found.json()["data"]
        assert data["results"] and data["relations"] == []
        assert data["warnings"][0]["code"] == "graph_unavailable"
        assert host.client.post("/api/memory/add", json={"user_id": dan, "content": "still works"}).status_code == 200

        teach(llm, "I also ride a bike", _graph_reply(dan, [(dan, "RIDES", "bike")]), "Rides a bike")
        failed = chat(host, dan, "I also ride a bike")
        assert failed.status_code == 503 and failed.headers["Retry-After"]
        assert host.client.get("/health/detail").json()["checks"]["graph"]["status"] == "down"
    memories = {m["memory"] for m in host.client.get(f"/api/memory/user/{dan}").json()["data"]["results"]}
    assert memories == {"Drives a Volvo", "still works"}  # the failed turn learned nothing
    recovered = host.client.post("/api/memory/search", json={"user_id": dan, "query": "Volvo"}).json()["data"]
    assert (dan, "DRIVES", "Volvo") in {
        (r["source"], r["relationship"], r["destination"]) for r in recovered["relations"]
    }
