"""What makes two memory texts the same text, and one keyword per agent and run scope.

The store adapters derive `_norm` (`norm_key`) and `_scope` (`scope_tag`) on every write
(shared/stores/vector/port.py); the duplicate check (shared/memory/dedupe.py) looks them up.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

_SPACES = re.compile(r"\s+")
# How many copies of one text an exact lookup makes room for (`allow_duplicates` can store several).
EXACT_ROOM = 4


def normalize(text: str) -> str:
    """The text as duplicates are compared: NFKC, case folded, whitespace collapsed, no trailing punctuation."""
    plain = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    end = len(plain)
    while end and (plain[end - 1].isspace() or unicodedata.category(plain[end - 1]).startswith("P")):
        end -= 1
    return plain[:end] or plain  # a text of punctuation alone stays itself


def _short(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


def norm_key(text: str) -> str:
    """`_norm`: the short hash of the normalized text."""
    return _short(normalize(text))


def scope_tag(agent_id: Any, run_id: Any) -> str:
    """`_scope`: one keyword for the agent and run scopes (none of either is a scope too)."""
    return _short(f"{agent_id or ''}\x1f{run_id or ''}")


_NUMBER = re.compile(r"\d+")


def numbers(text: str) -> list[str]:
    """The runs of digits of the text (NFKC: full-width digits too), sorted."""
    return sorted(_NUMBER.findall(unicodedata.normalize("NFKC", text)))
