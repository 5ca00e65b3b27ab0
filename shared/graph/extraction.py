"""What the LLM's answer may be, and the keys an entity is known by.

Strict pydantic models for the extraction JSON (anything invalid rejects the whole answer), the
normalisation of names and relation types, and the int8 encoding of the vectors stored in Neo4j.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

MAX_NAME_CHARS = 200
MAX_TYPE_CHARS = 50
MAX_EXTRACTION_TEXT_CHARS = 20_000
DEFAULT_ENTITY_TYPE = "entity"
SELF_ENTITY_TYPE = "person"
# How LLMs tend to name the speaker despite being told the user's name; all mean the user's own node.
_SELF_ALIASES = frozenset({"i", "me", "my", "myself", "user", "the user", "我", "用户"})
_WORDS = re.compile(r"\w+")
_NOT_REL_CHARS = re.compile(r"[^A-Z0-9]+")
_NOT_TYPE_CHARS = re.compile(r"[^\w]+")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


# --- normalisation ---------------------------------------------------------------------------------


def name_key(name: str) -> str:
    """The identity of an entity within a user: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def match_key(name: str) -> str | None:
    """What must appear in a query for the entity to count as named in it.

    ASCII names match on word boundaries (padded with spaces, like the query) so "Al" does not
    match "also"; other scripts (CJK has no spaces) match as a substring of at least two characters.
    """
    words = _WORDS.findall(name_key(name))
    if not words:
        return None
    joined = " ".join(words)
    if joined.isascii():
        return f" {joined} "
    return joined if len(joined) >= 2 else None


def query_match_text(query: str) -> str:
    return " " + " ".join(_WORDS.findall(name_key(query))) + " "


def normalise_relation_type(value: str) -> str:
    """`likes`, `is a`, `Lives-In` -> LIKES, IS_A, LIVES_IN: [A-Z0-9_], at most 50 characters."""
    ascii_only = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    normalised = _NOT_REL_CHARS.sub("_", ascii_only.upper()).strip("_")
    if not normalised:
        raise ValueError("relation type must contain letters or digits (English UPPER_SNAKE_CASE)")
    if len(normalised) > MAX_TYPE_CHARS:
        raise ValueError(f"relation type longer than {MAX_TYPE_CHARS} characters")
    return normalised


def normalise_entity_type(value: str) -> str:
    normalised = _NOT_TYPE_CHARS.sub("_", unicodedata.normalize("NFKC", value).casefold()).strip("_")
    return normalised[:MAX_TYPE_CHARS] or DEFAULT_ENTITY_TYPE


def _check_name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_NAME_CHARS:
        raise ValueError(f"entity name must be 1-{MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("entity name must not contain control characters")
    return value


# --- what the LLM must answer (anything else is rejected whole) -------------------------------------

EntityName = Annotated[str, Field(strict=True), AfterValidator(_check_name)]
RelationType = Annotated[str, Field(strict=True), AfterValidator(normalise_relation_type)]
EntityType = Annotated[str, Field(strict=True, max_length=200), AfterValidator(normalise_entity_type)]


class _Loose(BaseModel):
    # Extra keys ("reasoning", "confidence") are common and harmless; wrong types and values are not.
    model_config = ConfigDict(extra="ignore")


class ExtractedEntity(_Loose):
    name: EntityName
    type: EntityType = DEFAULT_ENTITY_TYPE


class ExtractedRelation(_Loose):
    source: EntityName
    relation: RelationType
    target: EntityName


class Extraction(_Loose):
    entities: list[ExtractedEntity] = Field(default_factory=list)
    relations: list[ExtractedRelation] = Field(default_factory=list)
    invalidates: list[Annotated[str, Field(strict=True, max_length=20)]] = Field(default_factory=list)


class RejectedExtraction(ValueError):
    """The LLM's answer is not a valid extraction; nothing of it is written."""


def parse_extraction(raw: str, *, max_entities: int, max_relations: int, known_refs: set[str]) -> Extraction:
    """Strictly validate the LLM's JSON answer; raise RejectedExtraction with the reason."""
    fenced = _FENCE.match(raw)  # some OpenAI-compatible servers fence JSON even in JSON mode
    text = fenced.group(1) if fenced else raw
    try:
        data = json.loads(text)
    except ValueError as error:
        raise RejectedExtraction(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise RejectedExtraction(f"expected a JSON object, got {type(data).__name__}")
    try:
        extraction = Extraction.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        raise RejectedExtraction(f"invalid extraction: {problems}") from None
    if len(extraction.entities) > max_entities:
        raise RejectedExtraction(f"{len(extraction.entities)} entities, more than the {max_entities} allowed")
    if len(extraction.relations) > max_relations:
        raise RejectedExtraction(f"{len(extraction.relations)} relations, more than the {max_relations} allowed")
    unknown = [ref for ref in extraction.invalidates if ref not in known_refs]
    if unknown:
        raise RejectedExtraction(f"invalidates unknown relation refs {unknown[:5]}")
    return extraction


# --- vectors ---------------------------------------------------------------------------------------


def quantise(vector: Sequence[float]) -> bytes:
    """An embedding as int8 bytes, scaled so its largest component is +-127.

    Cosine similarity ignores a vector's length, so the scale need not be stored; the rounding
    moves a cosine by at most ~0.001 (MiniLM, 384 dimensions), far below any useful threshold. A
    384-dimension vector is 384 bytes instead of ~3 KB of doubles: search reads all of a user's.
    """
    import numpy as np

    values = np.asarray(vector, dtype=np.float32)
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if peak == 0.0:
        return bytes(values.size)
    return bytes(np.round(values / peak * 127).astype(np.int8).tobytes())


def _cosines(vectors: Sequence[bytes], query: Any) -> Any:
    """Cosine of each int8 vector with the unit-length `query`; 0 for a missing or other-size vector."""
    import numpy as np

    dims = query.shape[0]
    result = np.zeros(len(vectors), dtype=np.float32)
    usable = [i for i, v in enumerate(vectors) if v is not None and len(v) == dims]
    if not usable or dims == 0:
        return result
    matrix = np.frombuffer(b"".join(vectors[i] for i in usable), dtype=np.int8).reshape(len(usable), dims)
    matrix = matrix.astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    result[usable] = (matrix @ query) / norms
    return result
