"""The signature API Management puts on the tenant and user headers: what it signs, what the app
refuses (missing, malformed, another tenant or user, stale, from the future), and when the app asks
for it (CALLER_SIGNING_KEY set and a caller header configured)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator

import pytest

from functions.caller import caller_from_headers
from shared.caller_signature import SIGNATURE_HEADER, SignatureError, sign, verify
from shared.errors import Unauthenticated
from shared.settings import Settings, get_settings

KEY = "k" * 16 + "0123456789abcdef0123"
TENANT_H, USER_H = "x-memory-tenant", "x-memory-user"


def test_the_mac_is_hmac_sha256_over_version_tenant_user_and_time() -> None:
    # What the APIM policy computes, written out independently of the module.
    expected = hmac.new(KEY.encode(), b"v1\nsub-1\nuser-9\n1700000000", hashlib.sha256).digest()
    assert sign(KEY, "sub-1", "user-9", 1700000000) == f"t=1700000000,v1={base64.b64encode(expected).decode()}"
    # A header that is not configured is signed as the empty string.
    assert sign(KEY, "sub-1", None, 5) == sign(KEY, "sub-1", "", 5) != sign(KEY, "sub-1", "x", 5)


def test_a_fresh_signature_of_the_same_tenant_and_user_passes() -> None:
    now = time.time()
    verify(sign(KEY, "sub-1", "u"), KEY, "sub-1", "u", max_age=300)
    verify(sign(KEY, "sub-1", None, int(now) - 299), KEY, "sub-1", None, max_age=300, now=now)


@pytest.mark.parametrize(
    ("value", "tenant", "user", "message"),
    [
        (None, "sub-1", None, "carries no"),
        ("", "sub-1", None, "carries no"),
        ("garbage", "sub-1", None, "malformed"),
        ("t=abc,v1=xyz", "sub-1", None, "malformed"),
        ("t=1700000000", "sub-1", None, "malformed"),
        ("t=1,t=2,v1=x", "sub-1", None, "malformed"),
        ("SIGNED-FOR-SUB-1", "sub-2", None, "does not match"),  # another tenant
        ("SIGNED-FOR-SUB-1", "sub-1", "mallory", "does not match"),  # a user added
        ("SIGNED-WITH-OTHER-KEY", "sub-1", None, "does not match"),
        ("STALE", "sub-1", None, "expired"),
        ("FUTURE", "sub-1", None, "expired"),
    ],
)
def test_anything_else_is_refused(value: str | None, tenant: str, user: str | None, message: str) -> None:
    now = int(time.time())
    value = {
        "SIGNED-FOR-SUB-1": sign(KEY, "sub-1", None, now),
        "SIGNED-WITH-OTHER-KEY": sign("another-key-" + "x" * 30, "sub-1", None, now),
        "STALE": sign(KEY, "sub-1", None, now - 301),
        "FUTURE": sign(KEY, "sub-1", None, now + 301),
    }.get(value or "", value)
    with pytest.raises(SignatureError, match=message):
        verify(value, KEY, tenant, user, max_age=300, now=now)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("TENANT_HEADER", "USER_HEADER", "CALLER_SIGNING_KEY", "WEBSITE_INSTANCE_ID"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _configure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_with_the_key_a_signed_tenant_is_honoured_and_an_unsigned_one_refused(settings: pytest.MonkeyPatch) -> None:
    _configure(settings, TENANT_HEADER=TENANT_H, USER_HEADER=USER_H, CALLER_SIGNING_KEY=KEY)
    signed = {TENANT_H: "sub-1", USER_H: "oid-7", SIGNATURE_HEADER: sign(KEY, "sub-1", "oid-7")}
    who = caller_from_headers(signed)
    assert (who.tenant, who.user) == ("sub-1", "oid-7")
    for headers in (
        {TENANT_H: "sub-1", USER_H: "oid-7"},  # no signature: straight to the app, past the policy
        {**signed, TENANT_H: "sub-2"},  # a signature of another tenant
        {**signed, USER_H: "oid-8"},  # ...or another user
        {**signed, SIGNATURE_HEADER: sign(KEY, "sub-1", "oid-7", int(time.time()) - 3600)},
    ):
        with pytest.raises(Unauthenticated, match="not trusted"):
            caller_from_headers(headers)


def test_without_the_key_or_without_tenancy_nothing_changes(settings: pytest.MonkeyPatch) -> None:
    _configure(settings, TENANT_HEADER=TENANT_H)
    assert caller_from_headers({TENANT_H: "sub-1"}).tenant == "sub-1"  # local runs: trusted as sent
    _configure(settings, CALLER_SIGNING_KEY=KEY)
    settings.delenv("TENANT_HEADER")
    get_settings.cache_clear()
    assert caller_from_headers({TENANT_H: "sub-1"}).tenant is None  # no tenancy: no header is read


def test_on_azure_tenancy_without_the_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "a1b2c3")
    azure = {"qdrant_url": "https://q.example:6333"}
    with pytest.raises(ValueError, match="CALLER_SIGNING_KEY is required on Azure"):
        Settings(tenant_header=TENANT_H, caller_signing_key=None, **azure)
    assert Settings(tenant_header=TENANT_H, caller_signing_key=KEY, **azure).caller_signing_key == KEY  # type: ignore[arg-type]
    assert Settings(tenant_header=None, caller_signing_key=None, **azure).tenant_header is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(caller_signing_key="short")
