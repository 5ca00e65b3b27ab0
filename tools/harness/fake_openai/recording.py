"""What the fake remembers of each request, for tests to read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header map (HTTP header names are case-insensitive)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = {k.lower(): v for k, v in items}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    json: Any
    kind: str | None  # 'chat' | 'embeddings' | None for unknown routes
    style: str | None  # 'openai' | 'azure'
    deployment: str | None
    status: int = 0  # the status the fake answered with
    duration_ms: float | None = None  # time the fake spent answering (benchmarks subtract it)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.json or {}).get("messages") or []) if isinstance(self.json, dict) else []
