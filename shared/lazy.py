"""A value built on first use, once per worker, by whichever thread asks first.

The one home of "build once, lazily": the worker's singletons (`shared/runtime.py`) and the model
clients (OpenAI clients, the local embedding model, the Neo4j driver) all hold their expensive part
in a `Lazy`. A build that raises is not kept: the next call tries again, which is how a worker
recovers when a backend that was down comes back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._built = False
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value, built now if this is the first call (one build even when threads race)."""
        if not self._built:
            with self._lock:
                if not self._built:
                    self._value = self._build()
                    self._built = True
        return self._value  # type: ignore[return-value]  # set together with _built

    def peek(self) -> T | None:
        """The value if it was built, else None; never builds."""
        return self._value if self._built else None

    def reset(self) -> T | None:
        """Forgets the value (the next `get` builds anew) and returns what was held."""
        with self._lock:
            value, self._value, self._built = self._value, None, False
        return value if value is not None else None
