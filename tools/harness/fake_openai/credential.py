"""An azure-identity stand-in, so the Entra ID code path runs without any identity service."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo


class StaticTokenCredential:
    """A `TokenCredential` that always hands out the same token and remembers what was asked.

    Works with `azure.identity.get_bearer_token_provider(cred, scope)`, so the Entra ID code path
    runs without any identity service.
    """

    def __init__(self, token: str = "fake-entra-token", expires_in: int = 3600) -> None:  # noqa: S107 - a fake
        self.token = token
        self.expires_in = expires_in
        self.scopes: list[tuple[str, ...]] = []
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken  # imported late: only Entra tests need azure-core

        self.scopes.append(scopes)
        self.calls += 1
        return AccessToken(self.token, int(time.time()) + self.expires_in)

    def get_token_info(self, *scopes: str, options: Mapping[str, Any] | None = None) -> AccessTokenInfo:
        from azure.core.credentials import AccessTokenInfo

        self.scopes.append(scopes)
        self.calls += 1
        return AccessTokenInfo(self.token, int(time.time()) + self.expires_in)

    def close(self) -> None:
        pass

    def __enter__(self) -> StaticTokenCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
