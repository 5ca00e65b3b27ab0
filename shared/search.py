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

import functools
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.stores.vector.port import SEQ_KEY, TS_KEY, Candidate, Hints, matches, month_keys

if TYPE_CHECKING:
    from shared.embeddings import Embedder
    from shared.models import MemoryRecord, SearchFilters
    from shared.settings import Settings
    from shared.stores.vector.port import VectorStore

logger = logging.getLogger(__name__)


# --- parameters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankingWeights:
    """How the signals combine. Defaults are the documented product behaviour (see SEARCH.md)."""

    semantic: float = 0.6
    keyword: float = 0.4
    speaker: float = 0.1
    date: float = 0.1
    context: float = 0.3


DEFAULT_WEIGHTS = RankingWeights()
# Candidates asked of the engine on each side (dense, keyword). On LoCoMo 50 and 100 give the same
# recall to the third decimal (tools/retrieval_lab.py); what the worker ranks stays small.
MIN_POOL = 50
POOL_PER_RESULT = 5
# The neighbours of this many of the best candidates are fetched for the context signal.
MIN_CONTEXT_SOURCES = 30
# Memories written within this many seconds of each other, one after the other, are context for
# each other; a batch is written at one instant, in its `_seq` order.
CONTEXT_WINDOW_SECONDS = 3600.0
# Payload keys that may carry a memory's own date (the date of the conversation it came from),
# in order of preference; `created_at` is the fallback.
DATE_KEYS = ("event_date", "date", "session_date", "timestamp")
# Payload keys naming who said or owns a memory; else a "Name: text" prefix of the text.
SPEAKER_KEYS = ("speaker", "actor_id")


# --- text analysis ---------------------------------------------------------------------------
# Han, kana and Hangul have no spaces between words: they are indexed as overlapping character
# bigrams (as Lucene's CJK analyzer does), which needs no dictionary and matches any word.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:['’][^\W_{_CJK}]+)*")
_APOSTROPHE = re.compile(r"['’]")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
# English function words: NLTK's list, plus the stems contractions leave behind ("don't" -> "don").
# Question words are among them: "when did" carries no topic.
_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before being below between
    both but by can cannot could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself me more most my myself no nor not of
    off on once only or other ought our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom whose why with would you your yours yourself yourselves
    don doesn didn isn wasn aren weren hasn haven hadn won wouldn shouldn couldn mustn shan t s ll re ve d m"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


class _Terms:
    """Word -> index term (Snowball English stem; "" for a stop word), memoised: vocabularies are small.

    The stemmer is py-rust-stemmers, which fastembed already installs.
    """

    def __init__(self) -> None:
        self.cache: dict[str, str] = {}
        try:
            import py_rust_stemmers

            self._stem: Callable[[str], str] | None = py_rust_stemmers.SnowballStemmer("english").stem_word
        except Exception:  # stemming only sharpens recall; without it words must match exactly
            logger.warning("py-rust-stemmers is unavailable: keyword search matches unstemmed words")
            self._stem = None

    def __call__(self, word: str) -> str:
        term = self.cache.get(word)
        if term is None:
            # "gina's" -> "gina", "don't" -> "don" (a stop word)
            word_part = _APOSTROPHE.split(word, 1)[0] if "'" in word or "’" in word else word
            if word_part in STOP_WORDS:
                term = ""
            elif self._stem is None or word_part.isdigit():
                term = word_part
            else:
                term = self._stem(word_part)
            if len(self.cache) > 500_000:  # a bound for adversarial input; real vocabularies are far smaller
                self.cache = {}
            self.cache[word] = term  # a racing thread computes the same value: no lock needed
        return term


_terms = _Terms()


def tokenize(text: str) -> list[str]:
    """Index terms of `text`: stemmed non-stop words, and bigrams of CJK runs."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    known = _terms.cache.get
    terms: list[str] = []
    for token in _TOKEN.findall(text.casefold()):
        term = known(token)  # the common case, first: a word seen before
        if term is None:
            if token[0] >= "\u3040" and _CJK_CHAR.match(token):
                terms.extend(_bigrams(token))
                continue
            term = _terms(token)
        if term:
            terms.append(term)
    return terms


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


# --- dates -----------------------------------------------------------------------------------
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_ISO_DATE = re.compile(r"\b((?:19|20)\d\d)-(0[1-9]|1[0-2])(?:-\d\d)?")
_CJK_DATE = re.compile(r"(?:((?:19|20)\d\d)\s*年)?\s*(1[0-2]|0?[1-9])\s*月")
_CJK_YEAR = re.compile(r"((?:19|20)\d\d)\s*年")
_YEAR = re.compile(r"(?<![\d-])((?:19|20)\d\d)(?![\d-])")
_MONTH_WORD = re.compile(r"\b([A-Za-z]{3,9})\b")
_NUMBER_BEFORE = re.compile(r"\d\s*(?:st|nd|rd|th)?\s*(?:of\s+)?$")
_NUMBER_AFTER = re.compile(r"^\.?\s*,?\s*\d")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)$")
_ABBREVIATIONS = frozenset({"jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"})

Month = tuple[int | None, int | None]  # (year, month); None where the text does not say


def _month_words(text: str) -> list[tuple[int, int, int]]:
    """Month names in `text` as (month, start, end).

    Full names count anywhere ("in July"), except "May" and "March", which are also common
    words: they count capitalised and not opening a sentence ("in May", not "May I ask").
    Abbreviations count only next to a number ("Aug 5", "5 Aug 2023"): "Jan" is also a name.
    """
    found = []
    for match in _MONTH_WORD.finditer(text):
        word = match.group(1)
        lower = word.lower()
        number = _MONTHS.get(lower)
        if number is None:
            continue
        before, after = text[max(0, match.start() - 12) : match.start()], text[match.end() : match.end() + 6]
        if lower in _ABBREVIATIONS:
            counts = bool(_NUMBER_BEFORE.search(before) or _NUMBER_AFTER.search(after))
        elif lower in ("may", "march"):
            counts = word[0].isupper() and not _SENTENCE_START.search(text[: match.start()])
        else:
            counts = True
        if counts:
            found.append((number, match.start(), match.end()))
    return found


def query_months(query: str) -> list[Month]:
    """The months and years a query names: "in May 2023", "last July", "2023-05", "2023年5月"."""
    constraints: list[Month] = []
    consumed: list[tuple[int, int]] = []
    for match in _ISO_DATE.finditer(query):
        constraints.append((int(match.group(1)), int(match.group(2))))
        consumed.append(match.span())
    for match in _CJK_DATE.finditer(query):
        constraints.append((int(match.group(1)) if match.group(1) else None, int(match.group(2))))
        consumed.append(match.span())
    for match in _CJK_YEAR.finditer(query):
        if not any(s <= match.start() < e for s, e in consumed):
            constraints.append((int(match.group(1)), None))
            consumed.append(match.span())
    years = [
        (int(m.group(1)), m.start()) for m in _YEAR.finditer(query) if not any(s <= m.start() < e for s, e in consumed)
    ]
    months = _month_words(query)
    used_years: set[int] = set()
    for month, _start, end in months:
        # A year right after the month ("May 2023", "May 7, 2023") belongs to it.
        year = next((y for y, at in years if end <= at <= end + 10), None)
        if year is not None:
            used_years.add(year)
        constraints.append((year, month))
    constraints.extend((year, None) for year, _ in years if year not in used_years)
    return constraints


def memory_month(payload: Mapping[str, Any]) -> Month:
    """The (year, month) a memory belongs to: its own date if the metadata has one, else its creation."""
    for key in (*DATE_KEYS, "created_at"):
        value = payload.get(key)
        if value is None or value == "":
            continue
        parsed = parse_month(value)
        if parsed != (None, None):
            return parsed
    return (None, None)


def parse_month(value: Any) -> Month:
    """(year, month) of a date written as ISO 8601, epoch seconds, "8 May, 2023", "May 8 2023" or "2023年5月"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 < value < 10_000_000_000:
            moment = datetime.fromtimestamp(value, UTC)
            return (moment.year, moment.month)
        return (None, None)
    return _parse_month_text(str(value))


@functools.lru_cache(maxsize=4096)  # a user's dates repeat: one per batch or per conversation
def _parse_month_text(text: str) -> Month:
    iso = _ISO_DATE.search(text)
    if iso:
        return (int(iso.group(1)), int(iso.group(2)))
    cjk = _CJK_DATE.search(text)
    if cjk and cjk.group(1):
        return (int(cjk.group(1)), int(cjk.group(2)))
    year = _YEAR.search(text)
    # A date field is a date: any month word in it counts, whatever its case.
    months = [_MONTHS[w.lower()] for w in _MONTH_WORD.findall(text) if w.lower() in _MONTHS]
    return (int(year.group(1)) if year else None, months[0] if months else None)


# --- speakers --------------------------------------------------------------------------------
# "Caroline: ...", "Dr. Lee: ...", "小明：..." at the start of a memory: a transcript line.
_CAPITALISED = r"[A-ZÀ-ÖØ-Þ][\w.'-]*"
_SPEAKER_PREFIX = re.compile(rf"^\s*({_CAPITALISED}(?:\s+{_CAPITALISED}){{0,2}}|[{_CJK}]{{1,4}})\s*(?:：|:\s)")


def memory_speaker(payload: Mapping[str, Any]) -> str | None:
    for key in SPEAKER_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    match = _SPEAKER_PREFIX.match(str(payload.get("data") or ""))
    return match.group(1) if match else None


# --- ranking ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    text: str
    terms: list[str]
    months: list[Month]

    @classmethod
    def parse(cls, text: str) -> Query:
        return cls(text, tokenize(text), query_months(text))


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
    return [
        Scored(c, _own(c, query, weights, scale if best_keyword > 0.0 else 0.0, set(query.terms))) for c in candidates
    ]


def _own(candidate: Candidate, query: Query, weights: RankingWeights, scale: float, terms: set[str]) -> float:
    semantic = min(max(candidate.semantic, 0.0), 1.0)
    if scale > 0.0:
        own = weights.semantic * semantic + weights.keyword * min(candidate.keyword / scale, 1.0)
    else:
        own = semantic
    payload = candidate.payload
    if weights.speaker and terms:
        speaker = memory_speaker(payload)
        if speaker and terms & set(tokenize(speaker)):
            own += weights.speaker
    if weights.date and query.months and _month_named(memory_month(payload), query.months):
        own += weights.date
    return own


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


def payload_matches(payload: Mapping[str, Any], filters: SearchFilters | None) -> bool:
    """The API's search filters evaluated on a stored payload (same meaning as the engine filters)."""
    return matches(payload, filters)


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

    def invalidate(self, user_id: str, memory_ids: Sequence[str] | None = None) -> None:
        """Nothing is cached: writes are seen by the next search wherever it runs."""

    def search(
        self, user_id: str, query: str, limit: int, filters: SearchFilters | None, threshold: float | None
    ) -> list[MemoryRecord]:
        """The user's memories best matching `query`, best first, scores in [0, 1]."""
        vector = self.embedder.embed(query, "search")
        pool = max(POOL_PER_RESULT * limit, MIN_POOL)
        parsed = Query.parse(query)
        hints = None
        if self.mode != "dense" and self.named_candidates:
            months = tuple(dict.fromkeys(k for y, m in parsed.months for k in month_keys(y, m)[:1]))
            hints = Hints(months=months, speakers=tuple(dict.fromkeys(parsed.terms)))
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
            terms = set(parsed.terms)
            for neighbour in self._neighbours(user_id, vector, query, scored, limit):
                scored.append(
                    Scored(neighbour, _own(neighbour, parsed, self.weights, scale if any_keyword else 0.0, terms))
                )
        add_context(scored, self.weights)
        scored.sort(key=lambda s: -s.score)
        return self._records(scored, limit, filters, threshold)

    def _neighbours(
        self, user_id: str, vector: Sequence[float], text: str, scored: Sequence[Scored], limit: int
    ) -> list[Candidate]:
        """The write-order neighbours of the best candidates that are not candidates already.

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
        return [c for c in self.store.neighbours(user_id, sorted(wanted), vector, text) if c.id not in known_ids]

    def _records(
        self, ranked: Sequence[Scored], limit: int, filters: SearchFilters | None, threshold: float | None
    ) -> list[MemoryRecord]:
        from shared.memory_service import record_from_payload

        records = []
        for item in ranked:
            score = round(min(max(item.score, 0.0), 1.0), 6)
            if threshold is not None and score < threshold:
                break
            if not payload_matches(item.candidate.payload, filters):
                continue  # a neighbour outside the filters lends context but is not a result
            records.append(record_from_payload(item.candidate.id, item.candidate.payload, score))
            if len(records) == limit:
                break
        return records
