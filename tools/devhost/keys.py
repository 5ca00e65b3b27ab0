"""Function keys, checked as the host does in Azure when the dev host runs with `--enforce-keys`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Where the host reads the key of a request: the header first, then the `code` query parameter
# (host src/WebJobs.Script.WebHost/Security/Authentication/AuthenticationLevelHandler.cs).
FUNCTIONS_KEY_HEADER = "x-functions-key"
FUNCTIONS_KEY_QUERY = "code"
KEYS_ENV = "DEVHOST_KEYS"
KEYS_FILE_ENV = "DEVHOST_KEYS_FILE"
ENFORCE_KEYS_ENV = "DEVHOST_ENFORCE_KEYS"


class KeysError(ValueError):
    """The keys given to the dev host are not of the shape it reads."""


@dataclass(frozen=True)
class FunctionKeys:
    """The keys the host checks, in the shape `az functionapp keys list` prints, plus per-function keys.

    `{"masterKey": "...", "functionKeys": {"default": "..."}, "functions": {"<function>": {"default": "..."}}}`:
    the master key opens every level, a host key (`functionKeys`) every function-level function, a
    function's own key only that function. Admin-level functions take the master key alone.
    """

    master: str
    host: Mapping[str, str] = field(default_factory=dict)
    functions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def generated(cls) -> FunctionKeys:
        import secrets

        return cls(secrets.token_urlsafe(40), {"default": secrets.token_urlsafe(40)})

    @classmethod
    def from_json(cls, data: object, where: str) -> FunctionKeys:
        if not isinstance(data, dict):
            raise KeysError(f"{where}: the keys must be a JSON object")
        master = data.get("masterKey")
        if not isinstance(master, str) or not master:
            raise KeysError(f"{where}: 'masterKey' must be a non-empty string")
        host = data.get("functionKeys", {})
        functions = data.get("functions", {})
        if not _is_key_map(host):
            raise KeysError(f"{where}: 'functionKeys' must map key names to non-empty strings")
        if not isinstance(functions, dict) or not all(
            isinstance(k, str) and _is_key_map(v) for k, v in functions.items()
        ):
            raise KeysError(f"{where}: 'functions' must map function names to {{key name: key}} objects")
        return cls(master, dict(host), {name.lower(): dict(keys) for name, keys in functions.items()})

    def grants(self, function_name: str, auth_level: str, key: str | None) -> bool:
        """Whether `key` may call a function of this name and auth level (anonymous needs none)."""
        if auth_level == "anonymous":
            return True
        if not key:
            return False
        if _same(key, self.master):
            return True
        if auth_level == "admin":
            return False
        own = self.functions.get(function_name.lower(), {})
        return any(_same(key, value) for value in (*self.host.values(), *own.values()))

    def to_json(self) -> dict[str, object]:
        return {"masterKey": self.master, "functionKeys": dict(self.host), "functions": dict(self.functions)}


def _is_key_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items())


def _same(given: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode(), expected.encode())


def load_function_keys(path: str | os.PathLike[str] | None = None) -> FunctionKeys | None:
    """Keys from `path`, else from the DEVHOST_KEYS setting (inline JSON), else DEVHOST_KEYS_FILE; None if none."""
    inline = os.environ.get(KEYS_ENV, "")
    file = path or os.environ.get(KEYS_FILE_ENV, "")
    if file:
        where = str(file)
        try:
            data = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeysError(f"{where}: cannot read the keys: {exc}") from None
        return FunctionKeys.from_json(data, where)
    if inline.strip():
        try:
            data = json.loads(inline)
        except ValueError as exc:
            raise KeysError(f"{KEYS_ENV}: not JSON: {exc}") from None
        return FunctionKeys.from_json(data, KEYS_ENV)
    return None


def request_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries: `x-functions-key`, else `?code=` (query names are case-insensitive there)."""
    header = headers.get(FUNCTIONS_KEY_HEADER)
    if header:
        return header
    for name, value in query.items():
        if name.lower() == FUNCTIONS_KEY_QUERY and value:
            return value
    return None
