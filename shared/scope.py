"""Who a call acts for: the tenant (from API Management, when `TENANT_HEADER` is set) and the user.

A `Scope` is resolved once per request at the HTTP face (functions/caller.py) and handed to the
service, which never acts outside it. Other entry points (async ingestion, tools) build one the
same way: `Scope(user_id)` for the zero-setup run, `Scope(user_id, tenant=...)` with tenancy.

Stores are keyed by `Scope.key`, the storage key of the user: the user id itself without a tenant
(so the zero-setup data and the seed's clients are unchanged), and `<len(tenant)>:<tenant>:<user>`
with one. The length prefix makes the key collision-free: two different (tenant, user) pairs never
share a key, whatever characters either holds. Every per-user structure of every store is therefore
per (tenant, user) with no change to the store: Qdrant's `user_id` tenant index, the write-order
counters, the BM25 statistics, Chroma's per-user collections, session partitions, mem0's message
log, the graph's user property. Vector payloads also carry the tenant itself as the derived field
`_tenant` (`TENANT_KEY`, keyword-indexed in each engine, never settable by a caller), which a by-id
call checks before anything is read back: another tenant's id is "not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TENANT_KEY = "_tenant"  # the derived payload field (shared/stores/vector/port.py lists it as derived)


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
            return stored_key
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
    return user_id if tenant is None else tenant_prefix(tenant) + user_id


def as_scope(value: Scope | str | None) -> Scope:
    """A scope from a scope or, for callers without tenancy (tools, tests), a plain user id."""
    if isinstance(value, Scope):
        return value
    return Scope(value)
