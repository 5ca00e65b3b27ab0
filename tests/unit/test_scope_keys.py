"""Storage keys (shared/scope.py): one per (tenant, user), with or without a tenant, and readable back."""

from __future__ import annotations

import itertools

from shared.scope import Scope, key_tenant, scope_of_key, storage_key

TENANTS = [None, "t", "ab", "a:b", "1", "0", "t:", ":"]
USERS = ["alice", "1:t:alice", "0::alice", "0::", "2:ab:c", "a:b", "12", ":x", "3:abc", "b:c", "c", "9:"]


def test_no_two_scopes_share_a_key_and_each_key_reads_back() -> None:
    pairs = list(itertools.product(TENANTS, USERS))
    keys = {storage_key(tenant, user): (tenant, user) for tenant, user in pairs}
    assert len(keys) == len(pairs)  # no collision, with or without a tenant
    for key, (tenant, user) in keys.items():
        assert key_tenant(key) == tenant
        assert (scope_of_key(key).tenant, scope_of_key(key).user_id) == (tenant, user)


def test_the_zero_setup_keys_are_the_user_ids() -> None:
    for user in ("alice", "user-42", "张三", "a:b", "12"):
        assert storage_key(None, user) == user  # data written before tenancy keeps its keys
    assert storage_key(None, "1:t:alice") == "0::1:t:alice" != storage_key("t", "alice") == "1:t:alice"


def test_a_tenantless_caller_owns_no_tenants_key_and_a_tenant_no_tenantless_one() -> None:
    plain, tenant = Scope(None), Scope(None, tenant="t")
    assert plain.user_of("1:t:alice") is None and plain.user_of("alice", {"_tenant": "t"}) is None
    assert plain.user_of("0::1:t:alice", {}) == "1:t:alice" and plain.user_of("alice", {}) == "alice"
    assert tenant.user_of("0::1:t:alice", {}) is None and tenant.user_of("1:t:alice", {}) is None  # no `_tenant`
    assert tenant.user_of("1:t:alice", {"_tenant": "t"}) == "alice"
