"""Requests and responses between ASGI and the Python library's types, converted as the host and the
worker do: Kestrel's path decoding, joined repeated headers and query values, `HttpResponse` or `str`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_to_bytes

if TYPE_CHECKING:
    import azure.functions as func

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_ENCODED_SLASH = re.compile(r"%2[fF]")


def _unquote_utf8(text: str) -> str:
    try:
        # Raw request paths reach here decoded as latin-1, so their bytes come back unchanged.
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return text  # Kestrel leaves sequences that are not UTF-8 encoded as they came


def decode_request_path(raw_path: str) -> str:
    """Percent-decode a request path the way Kestrel does: everything except %2F, which stays encoded
    so that it cannot split a segment."""
    pieces = _ENCODED_SLASH.split(raw_path)
    slashes = _ENCODED_SLASH.findall(raw_path)
    out = [_unquote_utf8(pieces[0])]
    for slash, piece in zip(slashes, pieces[1:], strict=True):
        out.extend((slash, _unquote_utf8(piece)))
    return "".join(out)


def _joined(pairs: Iterable[tuple[str, str]], *, lower_keys: bool) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}
    for key, value in pairs:
        folded = key.upper()
        name = spelled.setdefault(folded, key.lower() if lower_keys else key)
        grouped.setdefault(name, []).append(value)
    return grouped


def request_headers(scope: Scope) -> dict[str, str]:
    """Headers as the host sends them to the worker: lower-case names, repeated values joined with ','."""
    pairs = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", []))
    return {k: ",".join(v) for k, v in _joined(pairs, lower_keys=True).items()}


def request_query(query_string: bytes) -> dict[str, str]:
    """Query parameters as the host sends them: case-insensitive keys, repeated values joined with ',',
    empty values dropped."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    joined = {k: ",".join(v) for k, v in _joined(pairs, lower_keys=False).items()}
    return {k: v for k, v in joined.items() if v}


def _request_url(scope: Scope, headers: Mapping[str, str], raw_path: str) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{raw_path}{'?' + query if query else ''}"


def build_http_request(
    scope: Scope, body: bytes, route_params: Mapping[str, str], raw_path: str | None = None
) -> func.HttpRequest:
    """The `HttpRequest` the worker would build for this ASGI request."""
    from azure.functions.http import HttpRequest

    headers = request_headers(scope)
    path = raw_path if raw_path is not None else scope_raw_path(scope)
    # The worker builds this subclass; body_type "bytes" because it asks the host for raw body bytes.
    return HttpRequest(
        method=str(scope["method"]),
        url=_request_url(scope, headers, path),
        headers=headers,
        params=request_query(scope.get("query_string", b"")),
        route_params=dict(route_params),
        body_type="bytes",
        body=body,
    )


def scope_raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).split(b"?", 1)[0].decode("latin-1")
    from urllib.parse import quote

    return quote(str(scope.get("path", "/")), safe="/%:@!$&'()*+,;=")


ResponseParts = tuple[int, list[tuple[bytes, bytes]], bytes]


def to_asgi_response(result: object) -> ResponseParts:
    """(status, headers, body) of a function's return value, through the library converter the worker uses.

    Like the worker, only `HttpResponse` and `str` are accepted; anything else raises TypeError. Header
    values must be ASCII (Kestrel refuses others). Only Set-Cookie keeps repeated values: the worker sends
    headers as a map and cookies separately.
    """
    from azure.functions.http import HttpResponseConverter

    try:
        datum = HttpResponseConverter.encode(result, expected_type=None)
    except NotImplementedError:
        raise TypeError(
            f'unable to encode outgoing TypedData: unsupported type "http" for Python type "{type(result).__name__}"'
        ) from None
    if datum.type == "string":
        return 200, [(b"content-type", b"text/plain; charset=utf-8")], str(datum.value).encode("utf-8")
    value = datum.value
    status_text = value["status_code"].value
    status = int(status_text) if status_text else 200
    headers: list[tuple[bytes, bytes]] = []
    for name, item in value["headers"].items():
        if name.lower() in ("content-length", "transfer-encoding"):
            continue  # framing is the server's business
        headers.append((name.encode("ascii"), str(item.value).encode("ascii")))
    for cookie in value.get("cookies") or ():
        for morsel in cookie.values():
            headers.append((b"set-cookie", morsel.OutputString().encode("ascii")))
    body = value["body"].value or b""
    return status, headers, bytes(body)
