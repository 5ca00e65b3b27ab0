"""The test harness itself, exercised with the real clients the app uses.

If these fail, every test built on the harness would fail for reasons unrelated to the app, so
they pin down the contract: real SDK parsing, auth headers, retries, outages.
"""

from __future__ import annotations

import json
import math
import re
import uuid

import httpx
import openai
import pytest
from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError
from azure.data.tables import TableServiceClient, UpdateMode
from azure.identity import get_bearer_token_provider

from tools.harness import azurite as azurite_mod
from tools.harness import chroma_server as chroma_mod
from tools.harness.azurite import AzuriteServer
from tools.harness.chroma_server import ChromaServer
from tools.harness.fake_openai import FakeOpenAIServer, Reply, StaticTokenCredential, cosine

API_VERSION = "2024-10-21"
COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


# --- fake OpenAI -------------------------------------------------------------------------------


def openai_client(server: FakeOpenAIServer, **kw) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", **kw)


def test_openai_chat_echo_and_bearer_header(fake_openai: FakeOpenAIServer) -> None:
    client = openai_client(fake_openai)
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
    )
    assert resp.choices[0].message.content == "ACK: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "gpt-4o-mini"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    (req,) = fake_openai.chat_requests()
    assert req.path == "/v1/chat/completions" and req.style == "openai"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert fake_openai.last_chat_messages()[-1] == {"role": "user", "content": "hello there"}


def test_json_mode_default_and_rules(fake_openai: FakeOpenAIServer) -> None:
    client = openai_client(fake_openai)
    fmt = {"type": "json_object"}
    msgs = [{"role": "system", "content": "Extract facts as JSON"}, {"role": "user", "content": "I like tea"}]

    default = client.chat.completions.create(model="m", messages=msgs, response_format=fmt)
    assert json.loads(default.choices[0].message.content) == {"memory": []}

    fake_openai.when(contains="Extract", reply={"memory": [{"text": "likes tea"}]}, times=1)
    ruled = client.chat.completions.create(model="m", messages=msgs, response_format=fmt)
    assert json.loads(ruled.choices[0].message.content) == {"memory": [{"text": "likes tea"}]}
    # times=1 used the rule up
    again = client.chat.completions.create(model="m", messages=msgs, response_format=fmt)
    assert json.loads(again.choices[0].message.content) == {"memory": []}
    assert fake_openai.chat_requests()[0].json["response_format"] == fmt

    fake_openai.chat_responder = lambda req: f"custom {len(req['messages'])}"
    plain = client.chat.completions.create(model="m", messages=msgs)
    assert plain.choices[0].message.content == "custom 2"


def test_tool_call_reply_parses(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.when(reply=Reply(tool_calls=[{"name": "add_entities", "arguments": {"entities": ["tea"]}}]))
    resp = openai_client(fake_openai).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "add_entities" and json.loads(call.function.arguments) == {"entities": ["tea"]}


def test_batch_embeddings_deterministic_and_similar(fake_openai: FakeOpenAIServer) -> None:
    client = openai_client(fake_openai)
    texts = ["I love green tea", "I really love green tea", "the train leaves at noon"]
    resp = client.embeddings.create(model="text-embedding-3-small", input=texts)  # SDK asks for base64
    vecs = [d.embedding for d in resp.data]
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert all(len(v) == 1536 for v in vecs)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vecs)
    assert cosine(vecs[0], vecs[1]) > 0.7 > abs(cosine(vecs[0], vecs[2]))
    for got, text in zip(vecs, texts, strict=True):
        assert got == pytest.approx(fake_openai.embed(text), abs=1e-6)  # float32 over the wire

    small = client.embeddings.create(model="m", input="I love green tea", dimensions=64, encoding_format="float")
    assert small.data[0].embedding == fake_openai.embed("I love green tea", 64)
    assert fake_openai.embedding_requests()[-1].json["dimensions"] == 64
    assert resp.usage.total_tokens > 0


def test_embedding_dims_per_server() -> None:
    with FakeOpenAIServer(embedding_dims=384) as server:
        resp = openai_client(server).embeddings.create(model="m", input=["a", "b"])
        assert [len(d.embedding) for d in resp.data] == [384, 384]


def test_azure_api_key_deployment_path_and_api_version(fake_openai: FakeOpenAIServer) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=fake_openai.url, api_key="az-key", api_version=API_VERSION, max_retries=0
    )
    resp = client.chat.completions.create(model="chat-deploy", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "ACK: hi"
    emb = client.embeddings.create(model="embed-deploy", input=["hi"])
    assert len(emb.data[0].embedding) == 1536

    chat, embed_req = fake_openai.requests
    assert chat.path == "/openai/deployments/chat-deploy/chat/completions"
    assert embed_req.path == "/openai/deployments/embed-deploy/embeddings"
    for req in (chat, embed_req):
        assert req.query["api-version"] == API_VERSION
        assert req.headers["api-key"] == "az-key"
        assert "authorization" not in req.headers


def test_azure_entra_token_provider(fake_openai: FakeOpenAIServer) -> None:
    cred = StaticTokenCredential()
    client = openai.AzureOpenAI(
        azure_endpoint=fake_openai.url,
        azure_deployment="chat-deploy",
        azure_ad_token_provider=get_bearer_token_provider(cred, COGNITIVE_SCOPE),
        api_version=API_VERSION,
        max_retries=0,
    )
    client.chat.completions.create(model="ignored", messages=[{"role": "user", "content": "hi"}])
    (req,) = fake_openai.chat_requests()
    assert req.path == "/openai/deployments/chat-deploy/chat/completions"
    assert req.headers["Authorization"] == "Bearer fake-entra-token"
    assert "api-key" not in req.headers
    assert cred.scopes and all(s == (COGNITIVE_SCOPE,) for s in cred.scopes)


def test_azure_v1_route(fake_openai: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=fake_openai.azure_v1_base_url, api_key="az-key", max_retries=0)
    resp = client.chat.completions.create(model="chat-deploy", messages=[{"role": "user", "content": "v1"}])
    assert resp.choices[0].message.content == "ACK: v1"
    assert fake_openai.chat_requests()[0].style == "azure"


def test_auth_and_api_version_errors(fake_openai: FakeOpenAIServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=fake_openai.url) as http:
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = http.post("/v1/chat/completions", json=body, headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert r.status_code == 401
        r = http.post(f"/openai/deployments/d/chat/completions?api-version={API_VERSION}", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "401"
        r = http.post("/openai/deployments/d/chat/completions", json=body, headers={"api-key": "k"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
        r = http.post("/v1/nothing", json=body, headers={"Authorization": "Bearer k"})
        assert r.status_code == 404

    fake_openai.expected_api_key = "right"
    with pytest.raises(openai.AuthenticationError):
        openai_client(fake_openai).chat.completions.create(model="m", messages=body["messages"])


def test_429_then_success_with_sdk_retries(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.fail_next(1, status=429, retry_after="0.05")
    client = openai_client(fake_openai, max_retries=2)
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "again"}])
    assert resp.choices[0].message.content == "ACK: again"
    assert [r.status for r in fake_openai.chat_requests()] == [429, 200]


def test_retries_exhausted_and_fault_kinds(fake_openai: FakeOpenAIServer) -> None:
    client = openai_client(fake_openai, max_retries=1)
    fake_openai.fail_next(2, status=503, retry_after="0.01", kind="chat")
    # embeddings are not affected by chat-only faults
    client.embeddings.create(model="m", input="x")
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 503
    assert [r.status for r in fake_openai.chat_requests()] == [503, 503]


def test_down_and_up(fake_openai: FakeOpenAIServer) -> None:
    client = openai_client(fake_openai)
    fake_openai.down()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 503
    with pytest.raises(openai.APIStatusError):
        client.embeddings.create(model="m", input="x")
    fake_openai.up()
    assert client.embeddings.create(model="m", input="x").data


def test_delay_causes_client_timeout(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.delay_next(1, seconds=3)
    client = openai_client(fake_openai, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "slow"}])
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fast"}])
    assert resp.choices[0].message.content == "ACK: fast"


def test_stopped_fake_refuses_pooled_connections() -> None:
    server = FakeOpenAIServer().start()
    client = openai_client(server)
    client.embeddings.create(model="m", input="warm the pool")
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="m", input="x")


# --- missing servers -------------------------------------------------------------------------


def test_missing_servers_name_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(azurite_mod, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(azurite_mod.HarnessMissing, match=re.escape("npm install --prefix .cache/node")):
        azurite_mod.find_azurite()
    with pytest.raises(chroma_mod.HarnessMissing, match=re.escape("tools.harness.chroma_server install")):
        chroma_mod.find_chroma(tmp_path / "no-venv")


# --- Azurite -----------------------------------------------------------------------------------


def test_azurite_table_round_trip(azurite: AzuriteServer) -> None:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    assert service.url.startswith(azurite.table_endpoint)
    table = service.create_table_if_not_exists(f"t{uuid.uuid4().hex[:12]}")
    table.upsert_entity({"PartitionKey": "user-1", "RowKey": "a", "text": "likes tea", "n": 1})
    table.upsert_entity({"PartitionKey": "user-1", "RowKey": "b", "text": "likes trains", "n": 2})
    table.upsert_entity({"PartitionKey": "user-1", "RowKey": "a", "n": 3}, mode=UpdateMode.MERGE)
    rows = sorted(table.query_entities("PartitionKey eq @pk", parameters={"pk": "user-1"}), key=lambda e: e["RowKey"])
    assert [(r["RowKey"], r["text"], r["n"]) for r in rows] == [("a", "likes tea", 3), ("b", "likes trains", 2)]


def test_azurite_restart_keeps_data(azurite: AzuriteServer) -> None:
    name = f"t{uuid.uuid4().hex[:12]}"
    table = TableServiceClient.from_connection_string(azurite.connection_string).create_table_if_not_exists(name)
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": "kept"})
    with azurite.outage():
        down = TableServiceClient.from_connection_string(azurite.connection_string, retry_total=0)
        with pytest.raises(ServiceRequestError):
            down.get_table_client(name).get_entity("p", "r")
    after = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(name)
    assert after.get_entity("p", "r")["v"] == "kept"
    with pytest.raises(ResourceNotFoundError):
        after.get_entity("p", "missing")


# --- Chroma ------------------------------------------------------------------------------------


def chroma_client(server: ChromaServer):
    import chromadb
    from chromadb.config import Settings

    return chromadb.HttpClient(host=server.host, port=server.port, settings=Settings(anonymized_telemetry=False))


def test_chroma_round_trip(chroma_server: ChromaServer) -> None:
    from tools.harness.fake_openai import embed

    client = chroma_client(chroma_server)
    col = client.create_collection(f"c{uuid.uuid4().hex[:12]}", metadata={"hnsw:space": "cosine"})
    docs = {"a": "likes green tea", "b": "takes the train to work", "c": "drinks black tea daily"}
    col.add(
        ids=list(docs),
        embeddings=[embed(t, 64) for t in docs.values()],
        documents=list(docs.values()),
        metadatas=[{"user_id": "u1"}] * 3,
    )
    assert col.count() == 3
    hits = col.query(query_embeddings=[embed("green tea", 64)], n_results=2, where={"user_id": "u1"})
    assert hits["ids"][0][0] == "a"
    assert col.get(ids=["b"])["documents"] == ["takes the train to work"]


def test_chroma_outage_and_recovery(chroma_server: ChromaServer) -> None:
    name = f"c{uuid.uuid4().hex[:12]}"
    col = chroma_client(chroma_server).create_collection(name)
    col.add(ids=["x"], embeddings=[[0.1, 0.2, 0.3]])
    with chroma_server.outage():
        assert not chroma_server.running
        with pytest.raises(httpx.ConnectError):  # a client made before the outage
            col.count()
        with pytest.raises(ValueError, match="Could not connect"):  # a new client checks at construction
            chroma_client(chroma_server)
    again = chroma_client(chroma_server).get_collection(name)
    assert again.count() == 1
    assert again.get(ids=["x"], include=["embeddings"])["embeddings"][0] == pytest.approx([0.1, 0.2, 0.3])
