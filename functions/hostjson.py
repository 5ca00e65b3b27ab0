"""host.json as the Functions host reads it: keys matched case-insensitively, a UTF-8 BOM allowed.

The one reader of host.json, for this app (the route prefix in the OpenAPI document) and for the
dev host in tools/, which serves any app by the host's rules.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_ROUTE_PREFIX = "api"
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


def get_ci(mapping: object, key: str) -> object:
    """`mapping[key]` with the key matched case-insensitively (the host binds options that way)."""
    if not isinstance(mapping, dict):
        return None
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == key.lower():
            return v
    return None


def read_host_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8-sig"))


def read_route_prefix(host_json: str | os.PathLike[str]) -> str:
    """`extensions.http.routePrefix` of a host.json; "api" when absent, "" means no prefix."""
    prefix = get_ci(get_ci(get_ci(read_host_json(host_json), "extensions"), "http"), "routePrefix")
    if prefix is None:
        return DEFAULT_ROUTE_PREFIX
    if not isinstance(prefix, str):
        raise ValueError(f"{host_json}: extensions.http.routePrefix must be a string, not {prefix!r}")
    return prefix.strip("/")
