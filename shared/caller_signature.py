"""The signature API Management puts on the caller headers, and its check.

The tenant and user headers are trusted only because API Management sets them. The signature proves
that a request passed through that policy: the policy (infra/app/policies/caller-signature.xml) signs
the tenant and user it has just set, with a timestamp, using a key only it and the app hold
(CALLER_SIGNING_KEY, one Key Vault secret). A request that reached the app any other way - a caller
holding a function key or the MCP extension key, a misrouted gateway, a test client - cannot produce
it, so its tenant and user headers are refused rather than believed.

Header `x-memory-signature: t=<unix seconds>,v1=<base64 HMAC-SHA256>`, the MAC taken over
`v1\\n<tenant>\\n<user>\\n<t>` (an empty string for a header that is not configured). The
timestamp bounds how long a captured header set stays usable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

SIGNATURE_HEADER = "x-memory-signature"
VERSION = "v1"


class SignatureError(ValueError):
    """The signature is missing, malformed, wrong or outside its time window; the message says which."""


def _mac(key: str, tenant: str, user: str, issued: int) -> str:
    message = f"{VERSION}\n{tenant}\n{user}\n{issued}".encode()
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode("ascii")


def sign(key: str, tenant: str | None, user: str | None, issued: int | None = None) -> str:
    """The header value API Management sends for this tenant and user (what the policy computes)."""
    at = int(time.time()) if issued is None else issued
    return f"t={at},{VERSION}={_mac(key, tenant or '', user or '', at)}"


def verify(
    value: str | None, key: str, tenant: str | None, user: str | None, *, max_age: int, now: float | None = None
) -> None:
    """Raises SignatureError unless `value` signs exactly this tenant and user, within `max_age` seconds."""
    if not value or not value.strip():
        raise SignatureError(f"the request carries no {SIGNATURE_HEADER} header (set by API Management)")
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, field = part.strip().partition("=")
        if not sep or name in fields:
            raise SignatureError(f"the {SIGNATURE_HEADER} header is malformed")
        fields[name] = field
    issued_text, mac = fields.get("t", ""), fields.get(VERSION, "")
    if not issued_text.isdigit() or len(issued_text) > 12 or not mac:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is malformed")
    issued = int(issued_text)
    current = time.time() if now is None else now
    if abs(current - issued) > max_age:
        raise SignatureError(f"the {SIGNATURE_HEADER} header has expired (or is from the future)")
    if not hmac.compare_digest(mac.encode(), _mac(key, tenant or "", user or "", issued).encode()):
        raise SignatureError(f"the {SIGNATURE_HEADER} header does not match the tenant and user headers")
