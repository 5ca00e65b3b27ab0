"""Tenancy in each store engine the service runs on (Qdrant Edge, the default, and a Chroma server):
the same user id in two tenants, and (tenant, user) pairs that would collide under a naive join,
are separate users on every read, count, by-id call and delete; the payload keeps the tenant in its
reserved, indexed field and the caller never sees it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.contract import MemoryInput
from shared.errors import NotFound
from shared.memory.service import MemoryService
from shared.scope import TENANT_KEY, Scope
from shared.settings import Settings
from tests.helpers import local_model_path
from tools.harness.chroma_server import ChromaServer


@pytest.fixture(params=["edge", "chroma"])
def service(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryService]:
    extra: dict[str, object] = {}
    if request.param == "chroma":
        chroma: ChromaServer = request.getfixturevalue("chroma_server")
        extra = {"vector_store": "chroma", "chroma_host": chroma.host, "chroma_port": chroma.port}
    settings = Settings(
        data_dir=tmp_path / "data",
        local_embedding_model_path=local_model_path(),
        state_store="local",
        collection_name=f"tenancy{uuid.uuid4().hex[:8]}",
        **extra,  # type: ignore[arg-type]
    )
    from shared.factory import build_memory_service, build_session_store

    built = build_memory_service(settings, build_session_store(settings))
    yield built
    built.close()


def test_the_same_user_in_two_tenants_is_two_users(service: MemoryService) -> None:
    a, b, plain = Scope("u", tenant="acme"), Scope("u", tenant="globex"), Scope("u")
    # "1:a:" + "b:c" and "3:a:b:" + "c" would both read "a:b:c" joined by ":" without the lengths.
    tricky_one, tricky_two = Scope("b:c", tenant="a"), Scope("c", tenant="a:b")
    ids = {}
    for scope, word in ((a, "apple"), (b, "banana"), (plain, "cherry"), (tricky_one, "damson"), (tricky_two, "elder")):
        ids[word] = service.add_memories(scope, [MemoryInput(content=f"{word} pie", metadata={"category": word})])[0]
        service.add_memory(scope, f"{word} jam")

    for scope, word in ((a, "apple"), (b, "banana"), (plain, "cherry"), (tricky_one, "damson"), (tricky_two, "elder")):
        listed = service.list_memories(scope)
        assert {m.memory for m in listed} == {f"{word} pie", f"{word} jam"}
        assert {m.user_id for m in listed} == {scope.user_id}
        assert all(TENANT_KEY not in m.metadata for m in listed)
        found = service.search_memories(scope, "pie jam apple banana cherry damson elder", 20)
        assert {m.memory.split()[0] for m in found} == {word}
        assert service.count_memories(scope) == 2
        assert service.stats(scope).category_distribution == {word: 1, "other": 1}
        assert service.get_memory(ids[word], scope).user_id == scope.user_id
        assert service.get_memory(ids[word], Scope(None, scope.tenant)).user_id == scope.user_id

    # The payload names the tenant in its reserved field; the vector store filters on the storage key.
    stored = service.store.get(vector_id=ids["apple"])
    assert stored is not None
    assert stored.payload[TENANT_KEY] == "acme" and stored.payload["user_id"] == "4:acme:u"
    assert TENANT_KEY not in service.store.get(vector_id=ids["cherry"]).payload  # type: ignore[union-attr]

    # Another tenant's id, or a tenant's id seen without tenancy, is not found.
    for memory_id, scope in ((ids["apple"], b), (ids["apple"], Scope(None, "globex")), (ids["cherry"], a)):
        with pytest.raises(NotFound):
            service.get_memory(memory_id, scope)
        with pytest.raises(NotFound):
            service.delete_memory(memory_id, scope)
    with pytest.raises(NotFound):
        service.update_memory(ids["damson"], "taken", None, Scope(None, "a:b"))

    assert service.delete_user_memories(a) == 2
    assert service.list_memories(a) == [] and service.count_memories(a) == 0
    for scope in (b, plain, tricky_one, tricky_two):
        assert service.count_memories(scope) == 2


def test_each_engine_indexes_the_tenant(service: MemoryService) -> None:
    service.add_memory(Scope("u", tenant="acme"), "indexed")
    if service.store.kind == "edge":
        schema = service.store.shard.info().payload_schema  # type: ignore[attr-defined]
        assert TENANT_KEY in schema
    else:
        # Chroma: one collection per storage key, so a tenant's users are collections of their own.
        names = {service.store.user_collection_name(s.key) for s in (Scope("u", "acme"), Scope("u", "globex"))}  # type: ignore[attr-defined]
        assert len(names) == 2
        assert service.store.count_user(Scope("u", "globex").key) == 0


def test_a_qdrant_server_gets_a_tenant_index_on_the_tenant() -> None:
    from shared.stores.vector.qdrant.schema import payload_indexes

    index = payload_indexes(local=False)[TENANT_KEY]
    assert getattr(index, "is_tenant", None) is True and getattr(index, "type", None) == "keyword"


def test_a_tenantless_user_shaped_like_a_tenant_key_is_never_that_tenants_user(service: MemoryService) -> None:
    shaped, tenant_user = Scope("1:t:alice"), Scope("alice", tenant="t")
    assert shaped.key != tenant_user.key  # "0::1:t:alice" and "1:t:alice"
    mine = service.add_memory(shaped, "planted by the tenantless user").id
    theirs = service.add_memory(tenant_user, "the tenant's own memory").id
    # A memory written under the raw key before keys told the two apart: no `_tenant`, key "1:t:alice".
    legacy = str(uuid.uuid4())
    payload = {
        "user_id": tenant_user.key,
        "data": "legacy planted text",
        "hash": "h",
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    service.store.insert([service.embedder.embed("legacy planted text")], [payload], [legacy])

    for scope, own, others in ((shaped, mine, (theirs, legacy)), (tenant_user, theirs, (mine, legacy))):
        assert [m.id for m in service.list_memories(scope)] == [own]
        found = service.search_memories(scope, "planted legacy tenant memory text", 20)
        assert [m.id for m in found] == [own]
        assert service.count_memories(scope) == 1 and service.stats(scope).total_memories == 1
        for other in others:
            with pytest.raises(NotFound):
                service.get_memory(other, scope)
    assert service.list_memories(shaped)[0].user_id == "1:t:alice"  # the caller's id, not the key
    assert service.delete_user_memories(tenant_user) == 1
    assert service.store.get(vector_id=legacy) is not None  # no one's to delete: an operator's to remove
    assert service.count_memories(shaped) == 1
