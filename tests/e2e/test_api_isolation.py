"""Isolation: alice and bob share nothing on any path, and a by-id call naming the wrong owner is
refused without touching anything."""

from __future__ import annotations

import uuid

import httpx

ALICE_TEXTS = ["alice loves Interstellar", "alice drinks espresso", "alice codes in Python"]
BOB_TEXTS = ["bob loves Interstellar", "bob drinks tea", "bob codes in Rust"]


def _seed(api: httpx.Client) -> tuple[str, str, list[str], list[str]]:
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    a_ids = api.post(
        "/api/memory/batch-add",
        json={"user_id": alice, "memories": [{"content": t, "metadata": {"category": "a"}} for t in ALICE_TEXTS]},
    ).json()["data"]["memory_ids"]
    b_ids = [
        api.post("/api/memory/add", json={"user_id": bob, "content": t, "metadata": {"category": "b"}}).json()["data"][
            "memory_id"
        ]
        for t in BOB_TEXTS
    ]
    return alice, bob, a_ids, b_ids


def _texts(api: httpx.Client, user_id: str) -> set[str]:
    return {r["memory"] for r in api.get(f"/api/memory/user/{user_id}").json()["data"]["results"]}


def test_reads_never_cross_users(api: httpx.Client) -> None:
    alice, bob, _a_ids, _b_ids = _seed(api)
    assert _texts(api, alice) == set(ALICE_TEXTS)
    assert {r["memory"] for r in api.get(f"/api/chat/memories/{bob}").json()["data"]["results"]} == set(BOB_TEXTS)
    for path in ("/api/memory/search", "/api/chat/search-memories"):
        results = api.post(path, json={"user_id": alice, "query": "bob loves Interstellar", "limit": 50}).json()
        assert {r["user_id"] for r in results["data"]["results"]} == {alice}
        assert {r["memory"] for r in results["data"]["results"]} <= set(ALICE_TEXTS)
    stats = api.get(f"/api/memory/stats/{alice}").json()["data"]
    assert stats["total_memories"] == 3 and stats["category_distribution"] == {"a": 3}
    exported = api.get(f"/api/memory/export/{alice}").json()["data"]
    assert {m["memory"] for m in exported["memories"]} == set(ALICE_TEXTS)


def test_by_id_calls_with_the_wrong_owner_are_refused_and_change_nothing(api: httpx.Client) -> None:
    alice, bob, a_ids, _b_ids = _seed(api)
    target = a_ids[0]
    before = api.get(f"/api/memory/memory/{target}").json()["data"]

    assert api.get(f"/api/memory/memory/{target}", params={"user_id": bob}).status_code == 403
    assert api.get(f"/api/memory/memory/{target}/history", params={"user_id": bob}).status_code == 403
    refused = api.put("/api/memory/update", json={"memory_id": target, "content": "hijacked", "user_id": bob})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert api.delete(f"/api/memory/memory/{target}", params={"user_id": bob}).status_code == 403
    assert api.delete(f"/api/chat/memory/{target}", params={"user_id": bob}).status_code == 403

    after = api.get(f"/api/memory/memory/{target}").json()["data"]
    assert after == before
    # the owner can still do all of it
    assert api.get(f"/api/memory/memory/{target}", params={"user_id": alice}).status_code == 200
    assert api.delete(f"/api/memory/memory/{target}", params={"user_id": alice}).status_code == 200


def test_deleting_one_user_leaves_the_other_intact(api: httpx.Client) -> None:
    alice, bob, _a_ids, _b_ids = _seed(api)
    assert api.delete(f"/api/memory/user/{alice}").json()["data"] == {"deleted": 3}
    assert _texts(api, alice) == set()
    assert _texts(api, bob) == set(BOB_TEXTS)
    assert api.get(f"/api/memory/stats/{bob}").json()["data"]["total_memories"] == 3


def test_user_ids_that_look_alike_stay_apart(api: httpx.Client) -> None:
    base = f"carol-{uuid.uuid4().hex[:6]}"
    twins = [base, base.upper(), f"{base} ", f"{base}%", f"{base}*"]
    for name in twins:  # "I am 'x'" and "I am 'x '" normalize alike: stored both all the same
        api.post("/api/memory/add", json={"user_id": name, "content": f"I am {name!r}", "allow_duplicates": True})
    # trailing whitespace is stripped by validation, so `base` and `base ` are the same user
    assert len(_texts(api, base)) == 2
    for name in (base.upper(), f"{base}*"):
        assert _texts(api, name) == {f"I am {name!r}"}
    assert api.get(f"/api/memory/user/{base}%25").json()["data"]["total"] == 1
