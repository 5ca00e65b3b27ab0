"""Who is calling: the tenant and the end user API Management vouches for, read once per request.

API Management sets the `TENANT_HEADER` from the caller's subscription and the `USER_HEADER` from a
validated token, overriding whatever the client sent, and signs both (infra/app/policies). With
`CALLER_SIGNING_KEY` set (always on Azure) the headers are believed only with a valid, fresh
signature (shared/caller_signature.py): a request that did not pass through that policy cannot name
a tenant or a user, even if it reached the app. Without the key (local runs) they are trusted as they
arrive. With neither header setting the API behaves as the original did: `user_id` as sent, by-id
calls unscoped.

A handler calls `caller(req)` first (a missing header is 401 before the body is read), then
`.scope(user_id)` with the user the request names (path, body or query; None for a by-id call that
names none) to get the `Scope` the service acts in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import azure.functions as func

from shared.errors import Forbidden, Unauthenticated
from shared.scope import Scope

MAX_HEADER_VALUE = 128


@dataclass(frozen=True)
class Caller:
    tenant: str | None = None
    user: str | None = None  # the end user from USER_HEADER, when that setting is on

    def scope(self, *named: str | None) -> Scope:
        """The scope of a call naming `named` users (each None when the request names none).

        With a user header every named user must be that user (else 403), and a call naming none
        acts as that user, never unscoped. Without one, the named user (or None) as before.
        """
        given = [user for user in named if user is not None]
        if self.user is not None:
            for user in given:
                if user != self.user:
                    raise Forbidden("user_id differs from the authenticated user")
            return Scope(self.user, self.tenant, bound=True)
        return Scope(given[0] if given else None, self.tenant)


def caller(req: func.HttpRequest) -> Caller:
    """The caller of an API request: 401 when a configured header is missing or malformed."""
    return caller_from_headers({name.lower(): value for name, value in req.headers.items()})


def caller_from_headers(headers: Mapping[str, str]) -> Caller:
    """The caller of a request with these headers (names lower-case): an API call's or an MCP tool call's."""
    from shared.settings import get_settings

    settings = get_settings()
    found = Caller(
        tenant=_header(headers, settings.tenant_header, "tenant"),
        user=_header(headers, settings.user_header, "user"),
    )
    if settings.caller_signing_key and (found.tenant is not None or found.user is not None):
        _check_signature(headers, settings.caller_signing_key, found, settings.caller_signature_max_age_seconds)
    return found


def _check_signature(headers: Mapping[str, str], key: str, found: Caller, max_age: int) -> None:
    from shared.caller_signature import SIGNATURE_HEADER, SignatureError, verify

    try:
        verify(headers.get(SIGNATURE_HEADER), key, found.tenant, found.user, max_age=max_age)
    except SignatureError as error:
        raise Unauthenticated(f"{error}; the tenant and user headers are not trusted") from None


def _header(headers: Mapping[str, str], name: str | None, what: str) -> str | None:
    if not name or not name.strip():
        return None
    value = (headers.get(name.strip().lower()) or "").strip()
    if not value:
        raise Unauthenticated(
            f"the request carries no {what} identity (header {name.strip()!r}, set by API Management)"
        )
    if len(value) > MAX_HEADER_VALUE or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise Unauthenticated(
            f"the {what} identity (header {name.strip()!r}) must be 1-{MAX_HEADER_VALUE} printable characters"
        )
    return value
