"""The keyword side of the Chroma adapter: documents as analysed terms, the query as one `$regex`,
and the idf-weighted share of a query's terms a document holds."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from shared.query.text import tokenize

# chromadb's parameter types (TypedDict `where`s, numpy-or-sequence unions) are stricter than the
# plain dicts and lists built here, and the server validates every call anyway.
Collection = Any

logger = logging.getLogger(__name__)

# A long query (a pasted paragraph) would make a huge alternation; its first distinct terms carry it.
MAX_QUERY_TERMS = 32


def analysed(text: str) -> str:
    """The document Chroma holds: the text's distinct terms between single spaces, padded."""
    terms = dict.fromkeys(tokenize(text))
    return f" {' '.join(terms)} " if terms else " "


def query_terms(text: str) -> list[str]:
    return list(dict.fromkeys(tokenize(text)))[:MAX_QUERY_TERMS]


def keyword_patterns(terms: Sequence[str]) -> list[str]:
    """`$regex` patterns over analysed documents: any of the terms; at least two of them."""
    if not terms:
        return []
    either = "(?:" + "|".join(re.escape(term) for term in terms) + ")"
    patterns = [f" {either} "]
    if len(terms) > 1:
        # Terms in a document are distinct, so two matches of `either` are two different terms.
        patterns.append(f" {either}(?: | .* ){either} ")
    return patterns


def matched_terms(document: str | None, text: str | None, terms: Sequence[str]) -> int:
    """How many of `terms` the memory holds, from its analysed document (or its text, if it has none)."""
    held = held_terms(document, text)
    return sum(1 for term in terms if term in held)


def held_terms(document: str | None, text: str | None) -> set[str]:
    """The terms a memory holds: its analysed document, or its text analysed when it has none."""
    return set(document.split()) if document and document.strip() else set(tokenize(text or ""))


def idf_weights(terms: Sequence[str], held: Sequence[set[str]], total: int) -> dict[str, float]:
    """BM25's idf of each query term over `total` memories, `held` being the term sets of those seen.

    Exact when `held` covers every memory holding a query term (a small user's scan); otherwise a
    common term's count is cut at what the scans returned, which overstates its weight a little.
    """
    weights = {}
    for term in terms:
        df = sum(1 for terms_of in held if term in terms_of)
        if df:
            weights[term] = math.log(1 + (max(total, df) - df + 0.5) / (df + 0.5))
    return weights


def weighted_share(held: set[str], weights: Mapping[str, float]) -> float:
    """The idf-weighted share of the query's terms (those some memory holds) that `held` holds."""
    total = sum(weights.values())
    return sum(w for term, w in weights.items() if term in held) / total if total else 0.0
