"""What the fake answers: its embedding (a hashed bag of words) and its chat replies and rules."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DIMS = 1536

_TOKEN = re.compile(r"[a-z0-9]+")


# --- embeddings --------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def embed(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    """The fake's embedding of `text`: signed hashed bag of words, L2-normalised.

    Texts sharing words get a positive cosine, unrelated texts land near 0, and the same text
    always gives the same vector, which is what retrieval tests need from an embedder.
    """
    vec = [0.0] * dims
    words = tokens(text) or [text]  # punctuation-only text still needs a non-zero vector
    for word in words:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        n = int.from_bytes(digest, "little")
        vec[n % dims] += 1.0 if (n >> 63) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:  # words that cancelled out exactly in one bucket
        vec[0], norm = 1.0, 1.0
    return [v / norm for v in vec]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def count_tokens(value: Any) -> int:
    if isinstance(value, str):
        return max(1, len(tokens(value)))
    if isinstance(value, Mapping):
        return sum(count_tokens(v) for k, v in value.items() if k in ("content", "text"))
    if isinstance(value, list):
        return sum(count_tokens(v) for v in value)
    return 0


# --- chat replies ------------------------------------------------------------------------------


@dataclass
class Reply:
    """A full chat reply, for when a plain string is not enough (tool calls, finish reason)."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name": ..., "arguments": dict|str}]
    finish_reason: str | None = None


Responder = Callable[[dict[str, Any]], "str | dict[str, Any] | Reply"]


def message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def last_user_message(request_json: Mapping[str, Any]) -> str:
    for message in reversed(request_json.get("messages") or []):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def json_mode(request_json: Mapping[str, Any]) -> bool:
    fmt = request_json.get("response_format") or {}
    return isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")


def default_chat_responder(request_json: dict[str, Any]) -> str | dict[str, Any]:
    # `{"memory": []}` is the "nothing to extract" answer mem0's fact extraction parses.
    if json_mode(request_json):
        return {"memory": []}
    return f"ACK: {last_user_message(request_json)}"


@dataclass
class Rule:
    contains: str | None
    role: str | None
    match: Callable[[dict[str, Any]], bool] | None
    reply: Any
    times: int | None

    def matches(self, request_json: dict[str, Any]) -> bool:
        if self.match is not None and not self.match(request_json):
            return False
        if self.contains is not None:
            messages = request_json.get("messages") or []
            texts = [message_text(m) for m in messages if self.role is None or m.get("role") == self.role]
            if not any(self.contains in t for t in texts):
                return False
        return True
