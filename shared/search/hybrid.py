"""Hybrid memory search: the store engine finds the candidates, the worker ranks them in context.

Dense MiniLM similarity misses what conversations are full of: names, rare nouns and dates, and
answers that sit one turn away from the words of the question. A search therefore asks the store
engine for two candidate lists in one call, both filtered to the user and the search filters
inside the engine (`VectorStore.candidates`): the nearest memories by embedding, and the best
keyword matches (BM25 over the memory text on Qdrant; word matches on Chroma). The worker scores
that small set with four signals:

- semantic: the cosine similarity of the query and the memory embeddings;
- keyword: the engine's keyword score, as a share of the best keyword score among the candidates;
- boosts: the memory's speaker is named in the query; the memory's date falls in a month or year
  the query names;
- context: a memory written just before or after a strongly matching one is lifted, because in a
  conversation the answer often follows (or precedes) the turn that shares the question's words.
  The neighbours of the best candidates are fetched from the engine by their place in the user's
  write order (`_seq`), in one call.

    own(m)   = 0.6 * semantic + 0.4 * keyword + 0.1 * [speaker named] + 0.1 * [date named]
    score(m) = min(1, own(m) + 0.3 * max(own(previous), own(next)))

Nothing is cached in the worker and nothing of a user's is read beyond the candidates and their
neighbours: a first search on a fresh worker costs what any other search costs, and a memory
written by another worker is found by the next search.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.query.text import Month, memory_month, memory_speaker, query_months, tokenize
from shared.stores.vector.port import (
    MONTH_KEY,
    SEQ_KEY,
    SPEAKER_KEY,
    TS_KEY,
    Candidate,
    Hints,
    matches,
    month_keys,
)

if TYPE_CHECKING:
    from shared.ai.embeddings import Embedder
    from shared.contract import MemoryRecord, SearchFilters
    from shared.query.filters import Validity
    from shared.settings import Settings
    from shared.stores.vector.port import VectorStore

logger = logging.getLogger(__name__)


# --- parameters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankingWeights:
    """How the signals combine. Defaults are the documented product behaviour (see docs/search.md)."""

    semantic: float = 0.6
    keyword: float = 0.4
    speaker: float = 0.1
    date: float = 0.1
    context: float = 0.3


DEFAULT_WEIGHTS = RankingWeights()
# Candidates asked of the engine on each side (dense, keyword). On LoCoMo 50 and 100 give the same
# recall to the third decimal (tools/lab/retrieval_lab.py); what the worker ranks stays small.
MIN_POOL = 50
POOL_PER_RESULT = 5
# The neighbours of this many of the best candidates are fetched for the context signal.
MIN_CONTEXT_SOURCES = 30
# Memories written within this many seconds of each other, one after the other, are context for
# each other; a batch is written at one instant, in its `_seq` order.
CONTEXT_WINDOW_SECONDS = 3600.0


# --- ranking ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    text: str
    terms: list[str]
    months: list[Month]

    @classmethod
    def parse(cls, text: str) -> Query:
        return cls(text, tokenize(text), query_months(text))

    @property
    def month_keys(self) -> frozenset[str]:
        """The `_month` keys (port.month_keys) a memory of a named month holds: one per named month."""
        return frozenset(k for y, m in self.months for k in month_keys(y, m)[:1])


@dataclass
class Scored:
    """A memory being ranked: its own score and, once context is known, its final one."""

    candidate: Candidate
    own: float
    score: float = 0.0
    seq: int | None = None
    created: float | None = None

    def __post_init__(self) -> None:
        payload = self.candidate.payload
        seq, created = payload.get(SEQ_KEY), payload.get(TS_KEY)
        self.seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        self.created = float(created) if isinstance(created, int | float) and not isinstance(created, bool) else None


def own_scores(
    candidates: Sequence[Candidate],
    query: Query,
    weights: RankingWeights = DEFAULT_WEIGHTS,
    keyword_scale: float = 0.0,
) -> list[Scored]:
    """Each candidate's own score: semantic and keyword evidence plus the speaker and date boosts.

    The keyword evidence is the candidate's keyword score over `keyword_scale` (the engine's
    keyword ceiling: then it is the idf-weighted share of the query the memory holds), or over the
    best keyword score among the candidates when there is no ceiling. When no candidate holds a
    query word, the semantic similarity takes the whole weight, so the score reads as the plain
    similarity dense search would report.
    """
    best_keyword = max((c.keyword for c in candidates), default=0.0)
    scale = keyword_scale if keyword_scale > 0.0 else best_keyword
    terms = set(query.terms)
    scale = scale if best_keyword > 0.0 else 0.0
    months = query.month_keys
    return [Scored(c, _own(c, query, weights, scale, terms, months)) for c in candidates]


def _own(
    candidate: Candidate,
    query: Query,
    weights: RankingWeights,
    scale: float,
    terms: set[str],
    months: frozenset[str] = frozenset(),
) -> float:
    semantic = min(max(candidate.semantic, 0.0), 1.0)
    if scale > 0.0:
        own = weights.semantic * semantic + weights.keyword * min(candidate.keyword / scale, 1.0)
    else:
        own = semantic
    payload = candidate.payload
    if weights.speaker and terms and _speaker_named(payload, terms):
        own += weights.speaker
    if weights.date and query.months and _date_named(payload, query, months):
        own += weights.date
    return own


def _speaker_named(payload: Mapping[str, Any], terms: set[str]) -> bool:
    # The words of the speaker were derived on write (`_speaker`); a payload without them is read.
    derived = payload.get(SPEAKER_KEY)
    if isinstance(derived, list):
        return not terms.isdisjoint(derived)
    speaker = memory_speaker(payload)
    return speaker is not None and not terms.isdisjoint(tokenize(speaker))


def _date_named(payload: Mapping[str, Any], query: Query, months: frozenset[str]) -> bool:
    # The memory's month keys were derived on write (`_month`); a payload without them is read.
    derived = payload.get(MONTH_KEY)
    if isinstance(derived, list) and months:
        return not months.isdisjoint(derived)
    return _month_named(memory_month(payload), query.months)


def _month_named(month: Month, named: Sequence[Month]) -> bool:
    year, number = month
    for want_year, want_month in named:
        if want_year is not None and want_year != year:
            continue
        if want_month is not None and want_month != number:
            continue
        return True
    return False


def add_context(scored: Sequence[Scored], weights: RankingWeights = DEFAULT_WEIGHTS) -> None:
    """Sets each memory's final score: its own, lifted by the better of its two write-order neighbours.

    Neighbours are the memories at `_seq` +/- 1 of the same user written within
    CONTEXT_WINDOW_SECONDS; only memories in `scored` count (the caller fetched the neighbours of
    the best candidates, the only ones whose lift can matter).
    """
    by_seq: dict[int, list[Scored]] = {}
    for item in scored:
        if item.seq is not None:
            by_seq.setdefault(item.seq, []).append(item)
    for item in scored:
        lift = 0.0
        if weights.context and item.seq is not None:
            for other_seq in (item.seq - 1, item.seq + 1):
                for other in by_seq.get(other_seq, ()):
                    if _close_in_time(item, other):
                        lift = max(lift, other.own)
        item.score = item.own + weights.context * lift


def _close_in_time(a: Scored, b: Scored) -> bool:
    if a.created is None or b.created is None:
        return True  # written by an older version without a time: the order alone says they follow
    return abs(a.created - b.created) <= CONTEXT_WINDOW_SECONDS


# --- the searcher ----------------------------------------------------------------------------
class HybridSearcher:
    """The memory service's search over the vector-store port; stateless between calls."""

    def __init__(self, store: VectorStore, embedder: Embedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.mode = str(getattr(settings, "search_mode", "hybrid")).lower()
        self.weights = DEFAULT_WEIGHTS
        self.keyword_scale = "ceiling"  # or "best": relative to the best keyword candidate
        self.named_candidates = True  # also the nearest memories of months and speakers the query names

    def search(
        self, user_id: str, query: str, limit: int, filters: SearchFilters | None, threshold: float | None
    ) -> list[MemoryRecord]:
        """The user's memories best matching `query`, best first, scores in [0, 1]."""
        vector = self.embedder.embed(query, "search")
        pool = max(POOL_PER_RESULT * limit, MIN_POOL)
        parsed = Query.parse(query)
        hints = None
        if self.mode != "dense" and self.named_candidates:
            named = tuple(dict.fromkeys(k for y, m in parsed.months for k in month_keys(y, m)[:1]))
            hints = Hints(months=named, speakers=tuple(dict.fromkeys(parsed.terms)))
        found = self.store.candidates(user_id, vector, query, pool, filters, hints)
        if self.mode == "dense":
            ranked = [Scored(c, c.semantic, c.semantic) for c in found.items]
            ranked.sort(key=lambda r: -r.score)
            return self._records(ranked, limit, filters, threshold)
        scale = found.keyword_ceiling if self.keyword_scale == "ceiling" else 0.0
        scored = own_scores(found.items, parsed, self.weights, scale)
        if self.weights.context and scored:
            any_keyword = any(item.candidate.keyword > 0.0 for item in scored)
            scale = scale or max((item.candidate.keyword for item in scored), default=0.0)
            terms, months = set(parsed.terms), parsed.month_keys
            validity = filters.validity if filters is not None else None
            for neighbour in self._neighbours(user_id, vector, query, scored, limit, validity):
                own = _own(neighbour, parsed, self.weights, scale if any_keyword else 0.0, terms, months)
                scored.append(Scored(neighbour, own))
        add_context(scored, self.weights)
        scored.sort(key=lambda s: -s.score)
        return self._records(scored, limit, filters, threshold)

    def _neighbours(
        self,
        user_id: str,
        vector: Sequence[float],
        text: str,
        scored: Sequence[Scored],
        limit: int,
        validity: Validity | None = None,
    ) -> list[Candidate]:
        """The write-order neighbours (of the validity read) of the best candidates that are not candidates already.

        They are scored on the candidates' scale (the engine gives their keyword scores too).
        """
        known = {item.seq for item in scored if item.seq is not None}
        known_ids = {item.candidate.id for item in scored}
        best = sorted(scored, key=lambda s: -s.own)[: max(3 * limit, MIN_CONTEXT_SOURCES)]
        wanted: set[int] = set()
        for item in best:
            if item.seq is not None:
                wanted.update(s for s in (item.seq - 1, item.seq + 1) if s >= 0 and s not in known)
        if not wanted:
            return []
        found = self.store.neighbours(user_id, sorted(wanted), vector, text, validity)
        return [c for c in found if c.id not in known_ids]

    def _records(
        self, ranked: Sequence[Scored], limit: int, filters: SearchFilters | None, threshold: float | None
    ) -> list[MemoryRecord]:
        from shared.stores.vector.records import record_from_payload

        records = []
        for item in ranked:
            score = round(min(max(item.score, 0.0), 1.0), 6)
            if threshold is not None and score < threshold:
                break
            if not matches(item.candidate.payload, filters):
                continue  # a neighbour outside the filters lends context but is not a result
            records.append(record_from_payload(item.candidate.id, item.candidate.payload, score))
            if len(records) == limit:
                break
        return records
