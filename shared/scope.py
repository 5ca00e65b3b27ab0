"""Who a call acts for: the tenant (from API Management, when `TENANT_HEADER` is set) and the user.

A `Scope` is resolved once per request at the HTTP face (functions/caller.py) and handed to the
service, which never acts outside it. Other entry points (async ingestion, tools) build one the
same way: `Scope(user_id)` for the zero-setup run, `Scope(user_id, tenant=...)` with tenancy.

Stores are keyed by `Scope.key`, the storage key of the user: `<len(tenant)>:<tenant>:<user>` with a
tenant, and without one the user id itself (so the zero-setup data and the seed's clients are
unchanged) — unless the id has the shape of a tenant key (digits and a colon first, as `1:t:alice`
has), which is then written `0::<user>` (no tenant is empty, so no tenant key starts so). The key
is therefore collision-free in both directions: two different (tenant, user) pairs, with or without
a tenant, never share a key, whatever characters either holds, and `key_tenant` reads the tenant
back. Every per-user structure of every store is per (tenant, user) with no change to the store:
Qdrant's `user_id` tenant index, the write-order counters, the BM25 statistics, Chroma's per-user
collections, session partitions, mem0's message log, the graph's user property. Vector payloads
also carry the tenant itself as the derived field `_tenant` (`TENANT_KEY`, keyword-indexed in each
engine, never settable by a caller), and every read of the engines asks for it too: the key's
tenant, or no `_tenant` for a key without one (`port.belongs`, each engine's user condition). A
memory written under a key of another shape (one stored before this rule, by a tenant-less user
whose id looked like a tenant key) is thus seen by no one, rather than by the tenant it resembles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

TENANT_KEY = "_tenant"  # the derived payload field (shared/stores/vector/port.py lists it as derived)
UNTENANTED = "0::"  # the prefix of a tenant-less key that would otherwise look like a tenant's
_TENANT_SHAPED = re.compile(r"(\d+):")


@dataclass(frozen=True)
class Scope:
    """The acting user within the caller's tenant.

    `user_id` None is a by-id call that names no user: it acts tenant-wide (or, with neither
    tenancy nor a user header, unscoped as before). `bound` says the user came from the trusted
    user header, not from the request.
    """

    user_id: str | None
    tenant: str | None = None
    bound: bool = False

    @property
    def key(self) -> str:
        """The storage key of this scope's user (requires a user)."""
        if self.user_id is None:
            raise ValueError("this scope names no user")
        return storage_key(self.tenant, self.user_id)

    def payload_fields(self) -> dict[str, Any]:
        """The derived fields a stored memory of this scope carries beside mem0's own."""
        return {TENANT_KEY: self.tenant} if self.tenant is not None else {}

    def user_of(self, stored_key: str, payload: dict[str, Any] | None = None) -> str | None:
        """The plain user id of a stored memory if it lies in this scope's tenant, else None.

        Without a tenant every stored key is a plain user id. With one, both the key's prefix and
        the payload's `_tenant` must name this tenant (two checks, either suffices to refuse).
        """
        if self.tenant is None:
            if key_tenant(stored_key) is not None or (payload is not None and payload.get(TENANT_KEY) is not None):
                return None  # a tenant's memory: not this tenant-less caller's
            return stored_key.removeprefix(UNTENANTED) if stored_key.startswith(UNTENANTED) else stored_key
        prefix = tenant_prefix(self.tenant)
        if not stored_key.startswith(prefix):
            return None
        if payload is not None and payload.get(TENANT_KEY) != self.tenant:
            return None
        return stored_key[len(prefix) :]

    def as_user(self, user_id: str) -> Scope:
        return Scope(user_id, self.tenant, self.bound)


def tenant_prefix(tenant: str) -> str:
    return f"{len(tenant)}:{tenant}:"


def storage_key(tenant: str | None, user_id: str) -> str:
    if tenant is None:
        return UNTENANTED + user_id if _TENANT_SHAPED.match(user_id) else user_id
    return tenant_prefix(tenant) + user_id


def scope_of_key(key: str) -> Scope:
    """The scope whose storage key is `key` (the inverse of `storage_key`)."""
    tenant = key_tenant(key)
    if tenant is not None:
        return Scope(key[len(tenant_prefix(tenant)) :], tenant=tenant)
    return Scope(key.removeprefix(UNTENANTED))


def key_tenant(key: str) -> str | None:
    """The tenant of a storage key; None for a key without one."""
    found = _TENANT_SHAPED.match(key)
    if found is None or key.startswith(UNTENANTED):
        return None
    length, rest = int(found.group(1)), key[found.end() :]
    if length > 0 and len(rest) > length and rest[length] == ":":
        return rest[:length]
    return None  # a tenant-less key written before the escape: no tenant owns it


def as_scope(value: Scope | str | None) -> Scope:
    """A scope from a scope or, for callers without tenancy (tools, tests), a plain user id."""
    if isinstance(value, Scope):
        return value
    return Scope(value)
