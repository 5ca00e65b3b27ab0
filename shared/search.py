"""Hybrid memory search: dense similarity, keyword (BM25) matching and conversational context, offline.

Plain mem0 search on this stack is dense-only: its keyword and entity signals need models fetched
from a hub at run time. Dense MiniLM similarity misses what conversations are full of: names,
rare nouns and dates, and answers that sit one turn away from the words of the question. This
module ranks a user's memories with four signals, all computed in the worker from what the vector
store already holds, with no extra model and no LLM:

- semantic: the cosine similarity of the query and the memory embeddings (the store's own search);
- keyword: BM25 over the user's memories (Unicode words, English stop words and Snowball stems,
  CJK character bigrams), read as the idf-weighted share of the query's words the memory contains;
- boosts: the memory's speaker is named in the query; the memory's date falls in a month or year
  the query names;
- context: a memory written just before or after a strongly matching one is lifted, because in a
  conversation the answer often follows (or precedes) the turn that shares the question's words.

    own(m)   = 0.6 * semantic + 0.4 * keyword + 0.1 * [speaker named] + 0.1 * [date named]
    score(m) = min(1, own(m) + 0.3 * max(own(previous), own(next)))

The weights are round numbers chosen on LoCoMo dev conversations with leave-one-conversation-out
checks (tools/retrieval_lab.py); none is specific to a conversation or a question.

Per user, the worker keeps a keyword index (postings, memory order, speakers, dates) built from
the vector store. Workers are stateless: the index is only a cache of the store, kept current as
`HybridSearcher` describes, and any worker can serve any request.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shared.embeddings import Embedder
    from shared.models import MemoryRecord, SearchFilters
    from shared.settings import Settings

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
    # Okapi BM25 constants at their textbook values.
    k1: float = 1.2
    b: float = 0.75


DEFAULT_WEIGHTS = RankingWeights()
# Dense candidates asked of the store: the same over-fetch as mem0's own search, so the store call
# costs what plain mem0 search costs.
MIN_DENSE_POOL = 60
# Memories written within this many seconds of each other, one after the other, are context for
# each other; a batch is written at one instant, in its `seq` order.
CONTEXT_WINDOW_SECONDS = 3600.0
# Payload keys that may carry a memory's own date (the date of the conversation it came from),
# in order of preference; `created_at` is the fallback.
DATE_KEYS = ("event_date", "date", "session_date", "timestamp")
# Payload keys naming who said or owns a memory; else a "Name: text" prefix of the text.
SPEAKER_KEYS = ("speaker", "actor_id")
_SCAN_LIMIT = 1_000_000
_MAX_CACHED_USERS = 10_000


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


# --- the per-user index ----------------------------------------------------------------------
@dataclass(frozen=True)
class Analysed:
    """What the index keeps of one memory; reused across rebuilds while the memory is unchanged."""

    version: str
    term_ids: np.ndarray  # distinct terms, as ids of the user's vocabulary (int32)
    counts: np.ndarray  # their frequencies (float32)
    length: int
    speaker: str | None
    month: Month
    created: float | None
    seq: int | None


def analyse(payload: Mapping[str, Any], vocabulary: dict[str, int]) -> Analysed:
    """`vocabulary` maps terms to ids and only grows (new terms are added to it here)."""
    terms = tokenize(str(payload.get("data") or ""))
    counts: dict[int, int] = {}
    for term in terms:
        term_id = vocabulary.setdefault(term, len(vocabulary))
        counts[term_id] = counts.get(term_id, 0) + 1
    seq = payload.get("seq")
    return Analysed(
        version=_version(payload),
        term_ids=np.fromiter(counts, dtype=np.int32, count=len(counts)),
        counts=np.fromiter(counts.values(), dtype=np.float32, count=len(counts)),
        length=len(terms),
        speaker=memory_speaker(payload),
        month=memory_month(payload),
        created=_timestamp(payload.get("created_at")),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
    )


def _version(payload: Mapping[str, Any]) -> str:
    """Changes whenever the memory is rewritten (mem0 sets a new hash and updated_at)."""
    return f"{payload.get('hash') or ''}|{payload.get('updated_at') or ''}"


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class UserIndex:
    """An immutable snapshot of one user's memories for keyword, speaker, date and context scoring."""

    def __init__(
        self,
        user_id: str,
        rows: Sequence[tuple[str, dict[str, Any]]],
        weights: RankingWeights = DEFAULT_WEIGHTS,
        previous: UserIndex | None = None,
        read_at: float | None = None,
    ) -> None:
        self.user_id = user_id
        self.weights = weights
        # When the store was last read in full; a patched index keeps its base's time, so that
        # patches never put off the periodic re-read.
        self.built_at = read_at if read_at is not None else time.monotonic()
        self.ids = [memory_id for memory_id, _ in rows]
        self.payloads = [payload for _, payload in rows]
        self.position = {memory_id: i for i, memory_id in enumerate(self.ids)}
        self.size = n = len(rows)
        # Analyses (and the vocabulary their term ids refer to) carry over from the index this one
        # replaces, so a rebuild or patch only tokenises memories that are new or rewritten. The
        # vocabulary only grows, and only under the user's build lock; an index ignores ids added
        # after it was built.
        self.vocabulary: dict[str, int] = previous.vocabulary if previous is not None else {}
        reuse: dict[str, Analysed] = previous.analysed_by_id if previous is not None else {}
        analysed: list[Analysed] = []
        for memory_id, payload in rows:
            known = reuse.get(memory_id)
            fresh = known is not None and known.version == _version(payload)
            analysed.append(known if fresh and known is not None else analyse(payload, self.vocabulary))
        self.analysed_by_id: dict[str, Analysed] = dict(zip(self.ids, analysed, strict=True))
        self.versions = [a.version for a in analysed]

        # BM25 postings: for each term, the memories holding it and their saturated, length-
        # normalised term frequency, in one flat list sorted by term: term t's postings are
        # [start[t], start[t + 1]). idf is the Lucene form, always positive.
        self.term_count = len(self.vocabulary)
        lengths = np.array([a.length for a in analysed], dtype=np.float64)
        average = float(lengths.mean()) if n and lengths.sum() else 1.0
        norm = weights.k1 * (1 - weights.b + weights.b * lengths / average)
        if n:
            term_of = np.concatenate([a.term_ids for a in analysed])
            tf = np.concatenate([a.counts for a in analysed]).astype(np.float64)
        else:
            term_of, tf = np.zeros(0, dtype=np.int32), np.zeros(0)
        doc_of = np.repeat(np.arange(n, dtype=np.int32), [len(a.term_ids) for a in analysed])
        order = np.argsort(term_of, kind="stable")
        doc_of, tf = doc_of[order], tf[order]
        # 32-bit: half the memory of a cached index, and precision far beyond what ranking needs
        self.posting_docs = doc_of
        self.posting_weights = (tf * (weights.k1 + 1) / (tf + norm[doc_of])).astype(np.float32)
        df = np.bincount(term_of, minlength=self.term_count)
        self.posting_start = np.concatenate(([0], np.cumsum(df)))
        self.idf = np.log(1 + (n - df + 0.5) / (df + 0.5))

        speakers: dict[str, int] = {}
        self.speaker_of = np.full(n, -1, dtype=np.int64)
        for i, a in enumerate(analysed):
            if a.speaker:
                self.speaker_of[i] = speakers.setdefault(a.speaker, len(speakers))
        self.speaker_terms = [frozenset(tokenize(name)) for name in speakers]

        self.year = np.array([a.month[0] if a.month[0] is not None else -1 for a in analysed], dtype=np.int64)
        self.month = np.array([a.month[1] if a.month[1] is not None else -1 for a in analysed], dtype=np.int64)

        self.previous, self.next = _neighbours(analysed)

    def version_of(self, memory_id: str) -> str | None:
        position = self.position.get(memory_id)
        return None if position is None else self.versions[position]

    def patched(self, upserts: Mapping[str, dict[str, Any]], removed: Iterable[str]) -> UserIndex:
        """A new index with `upserts` written over and `removed` (ids not in `upserts`) left out."""
        gone = set(removed) - set(upserts)
        rows = [(i, p) for i, p in zip(self.ids, self.payloads, strict=True) if i not in upserts and i not in gone]
        rows.extend(upserts.items())
        return UserIndex(self.user_id, rows, self.weights, previous=self, read_at=self.built_at)

    def keyword_scores(self, terms: Iterable[str]) -> tuple[np.ndarray, bool]:
        """The idf-weighted share of the query's known terms each memory holds (BM25, in [0, 1]).

        Query terms no memory holds are left out of the share: they cannot tell memories apart,
        and counting them would only shrink every keyword score. Also says whether any query term
        is known at all.
        """
        scores = np.zeros(self.size)
        total = 0.0
        for term in set(terms):
            t = self.vocabulary.get(term)
            if t is None or t >= self.term_count or self.posting_start[t] == self.posting_start[t + 1]:
                continue  # in no memory of this index
            start, end = self.posting_start[t], self.posting_start[t + 1]
            idf = float(self.idf[t])
            scores[self.posting_docs[start:end]] += idf * self.posting_weights[start:end]
            total += idf
        if total == 0.0:
            return scores, False
        return np.minimum(scores / total, 1.0), True

    def speaker_mask(self, terms: set[str]) -> np.ndarray:
        named = [i for i, speaker in enumerate(self.speaker_terms) if speaker and speaker & terms]
        if not named:
            return np.zeros(self.size, dtype=bool)
        return np.isin(self.speaker_of, named)

    def date_mask(self, months: Sequence[Month]) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        for year, month in months:
            hit = np.ones(self.size, dtype=bool)
            if year is not None:
                hit &= self.year == year
            if month is not None:
                hit &= self.month == month
            mask |= hit
        return mask


def _neighbours(analysed: Sequence[Analysed]) -> tuple[np.ndarray, np.ndarray]:
    """For each memory, the one written just before and just after it (-1 when none).

    Order is creation time, then position in the batch (`seq`). A memory sharing its creation
    time with others but without `seq` has no known place among them, so it has no neighbours
    at all; memories written more than CONTEXT_WINDOW_SECONDS apart are not neighbours either.
    """
    n = len(analysed)
    previous = np.full(n, -1, dtype=np.int64)
    following = np.full(n, -1, dtype=np.int64)
    batches: dict[float, list[int]] = {}
    for i, a in enumerate(analysed):
        if a.created is not None:
            batches.setdefault(a.created, []).append(i)
    placed: list[int] = []
    for created in sorted(batches):
        members = batches[created]
        if len(members) > 1:
            if any(analysed[i].seq is None for i in members):
                placed.append(-1)  # unknown order: a break in the chain
                continue
            members.sort(key=lambda i: analysed[i].seq or 0)
        placed.extend(members)
    for a_index, b_index in itertools.pairwise(placed):
        if a_index < 0 or b_index < 0:
            continue
        if (analysed[b_index].created or 0.0) - (analysed[a_index].created or 0.0) <= CONTEXT_WINDOW_SECONDS:
            following[a_index] = b_index
            previous[b_index] = a_index
    return previous, following


# --- ranking ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    text: str
    terms: list[str]
    months: list[Month]

    @classmethod
    def parse(cls, text: str) -> Query:
        return cls(text, tokenize(text), query_months(text))


def lexical_scores(
    index: UserIndex, query: Query, weights: RankingWeights = DEFAULT_WEIGHTS
) -> tuple[np.ndarray, bool]:
    """The part of every memory's own score that needs no embedding: weighted keyword share and boosts.

    Also says whether any query word occurs in the user's memories (else the keyword signal is
    silent, and `rank` gives the semantic signal the whole weight).
    """
    keyword, any_known = index.keyword_scores(query.terms)
    scores = weights.keyword * keyword if any_known else np.zeros(index.size)
    if weights.speaker:
        scores += weights.speaker * index.speaker_mask(set(query.terms))
    if weights.date and query.months:
        scores += weights.date * index.date_mask(query.months)
    return scores, any_known


def rank(
    index: UserIndex,
    query: Query,
    dense_positions: np.ndarray,
    dense_similarities: np.ndarray,
    pool_exhaustive: bool,
    weights: RankingWeights = DEFAULT_WEIGHTS,
    lexical: tuple[np.ndarray, bool] | None = None,
) -> np.ndarray:
    """The score of every memory of the index (see the module docstring), uncapped.

    Dense similarity is known for the store's candidates only. Every other memory scored below
    the weakest candidate, so it is given that similarity: an upper bound that keeps keyword and
    context evidence able to lift it. When the store returned fewer candidates than asked, it
    returned every memory passing the filters, and the others get 0. `lexical` is
    `lexical_scores(index, query, weights)` when the caller has it already.
    """
    n = index.size
    floor = float(dense_similarities.min()) if len(dense_similarities) and not pool_exhaustive else 0.0
    semantic = np.full(n, max(floor, 0.0))
    if len(dense_positions):
        semantic[dense_positions] = np.clip(dense_similarities, 0.0, 1.0)
    lexical_part, any_known = lexical if lexical is not None else lexical_scores(index, query, weights)
    # When no query word occurs in any memory, the score is the plain semantic similarity (as
    # dense search would report it) rather than 60% of it.
    own = (weights.semantic if any_known else 1.0) * semantic + lexical_part
    if weights.context and n:
        padded = np.append(own, 0.0)  # index -1 reads the 0 at the end: no neighbour
        context = np.maximum(padded[index.previous], padded[index.next])
        return own + weights.context * context
    return own


# --- filters ---------------------------------------------------------------------------------
def payload_matches(payload: Mapping[str, Any], filters: SearchFilters | None) -> bool:
    """The API's search filters evaluated on a stored payload (same meaning as the store filters)."""
    if filters is None:
        return True
    for key, value in (filters.metadata or {}).items():
        if payload.get(key) != value:
            return False
    if filters.categories and payload.get("category") not in filters.categories:
        return False
    if filters.created_after is not None or filters.created_before is not None:
        created = _timestamp(payload.get("created_at"))
        if created is None:
            return False
        if filters.created_after is not None and created < _as_utc(filters.created_after):
            return False
        if filters.created_before is not None and created >= _as_utc(filters.created_before):
            return False
    return True


def _as_utc(moment: datetime) -> float:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


# --- the searcher ----------------------------------------------------------------------------
class HybridSearcher:
    """The memory service's search: dense candidates from the store, re-ranked with the user's index.

    The index is a cache of what the store holds, and every way it can fall behind is covered:

    - this worker's writes: `invalidate` (with the changed ids, only those are re-read);
    - another worker's writes among this query's dense candidates: the store returns their current
      payloads, which are patched in at once, and a background refresh looks for more;
    - another worker's deletes or rewrites of a result found through the index alone: each such
      result is re-read before it is returned (one store call), so a deleted memory or an old text
      is never returned;
    - anything else another worker did (a memory far in meaning from the queries so far): the
      index is re-read in the background once it is SEARCH_INDEX_MAX_AGE_SECONDS old.
    """

    def __init__(self, memory: Any, embedder: Embedder, settings: Settings) -> None:
        self.memory = memory
        self.embedder = embedder
        self.settings = settings
        self.mode = str(getattr(settings, "search_mode", "hybrid")).lower()
        self.max_age = float(getattr(settings, "search_index_max_age_seconds", 60.0))
        self.cache_limit = int(getattr(settings, "search_cache_max_memories", 50_000))
        self.weights = DEFAULT_WEIGHTS
        self._indexes: OrderedDict[str, UserIndex] = OrderedDict()
        self._reread: set[str] = set()  # users whose index must be read again in full
        self._changed: dict[str, set[str]] = {}  # ids this worker changed since the index was built
        self._refreshing: set[str] = set()
        self._checked: dict[str, float] = {}  # when a background refresh last found the index current
        self._lock = threading.Lock()  # guards the six fields above; held briefly, never across I/O
        self._user_locks: dict[str, threading.Lock] = {}  # one index build or patch per user at a time
        self._similarity = _similarity_function(memory.vector_store)
        # Embedded Qdrant answers from this process's memory, one call at a time: its reads are
        # cheap and stay on the searching thread. A store over the network is read in parallel.
        self._embedded = _is_embedded(memory.vector_store)
        self._parallel_reads = not self._embedded
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="search-read")

    # --- cache -------------------------------------------------------------------------------
    def invalidate(self, user_id: str, memory_ids: Iterable[str] | None = None) -> None:
        """This worker changed the user's memories: `memory_ids` if given, else possibly any."""
        with self._lock:
            lock = self._user_locks.get(user_id)
            if user_id not in self._indexes and not (lock is not None and lock.locked()):
                return  # nothing cached and nothing being built: the first search reads the store
            if memory_ids is None:
                self._reread.add(user_id)
            else:
                self._changed.setdefault(user_id, set()).update(memory_ids)

    def index_for(self, user_id: str) -> UserIndex:
        """The user's index, first built or brought up to date with this worker's own writes."""
        with self._lock:
            cached = self._indexes.get(user_id)
            if cached is not None and user_id not in self._reread and not self._changed.get(user_id):
                self._indexes.move_to_end(user_id)
                if time.monotonic() - max(cached.built_at, self._checked.get(user_id, 0.0)) >= self.max_age:
                    self._refresh_in_background(user_id)
                return cached
        with self._user_lock(user_id):
            with self._lock:
                cached = self._indexes.get(user_id)
                reread = cached is None or user_id in self._reread
                changed = self._changed.pop(user_id, set())
                if reread:
                    self._reread.discard(user_id)  # before the read: a write landing during it marks it again
            if not reread and not changed and cached is not None:
                return cached  # brought up to date by another thread while this one waited
            try:
                if reread or cached is None:
                    index = UserIndex(user_id, self._read_user(user_id), self.weights, previous=cached)
                else:
                    index = cached.patched(self._read_ids(user_id, changed), changed)
            except Exception:
                with self._lock:  # not read: still to do
                    if reread:
                        self._reread.add(user_id)
                    self._changed.setdefault(user_id, set()).update(changed)
                raise
            self._install(user_id, index)
            return index

    def _patch(self, user_id: str, seen: UserIndex, upserts: dict[str, dict[str, Any]], removed: set[str]) -> UserIndex:
        """Applies what a search learnt from the store (fresh payloads, vanished ids) to the index."""
        with self._user_lock(user_id):
            with self._lock:
                current = self._indexes.get(user_id, seen)
            index = current.patched(upserts, removed)
            self._install(user_id, index)
            return index

    def _install(self, user_id: str, index: UserIndex) -> None:
        with self._lock:
            self._indexes[user_id] = index
            self._indexes.move_to_end(user_id)
            total = sum(i.size for i in self._indexes.values())
            # least recently searched users go first, past the memory budget or the user count
            while len(self._indexes) > 1 and (total > self.cache_limit or len(self._indexes) > _MAX_CACHED_USERS):
                dropped_user, dropped = self._indexes.popitem(last=False)
                self._checked.pop(dropped_user, None)
                self._reread.discard(dropped_user)
                self._changed.pop(dropped_user, None)
                total -= dropped.size

    def _refresh_in_background(self, user_id: str) -> None:
        """Re-reads the user's memories without holding up searches (called with `_lock` held)."""
        if user_id in self._refreshing:
            return
        self._refreshing.add(user_id)
        threading.Thread(target=self._refresh, args=(user_id,), name=f"search-refresh-{user_id}", daemon=True).start()

    def _refresh(self, user_id: str) -> None:
        """Catches up with other workers: the ids in the store against the index's, and the new
        memories read; a full re-read (which also sees rewrites) once the last is 10 ages old."""
        try:
            started = time.monotonic()
            with self._lock:
                seen = self._indexes.get(user_id)
            if seen is None:
                return
            listed = None if started - seen.built_at >= 10 * self.max_age else self._list_ids(user_id)
            if listed is None:
                rows = self._read_user(user_id)
                with self._user_lock(user_id):
                    with self._lock:
                        current = self._indexes.get(user_id)
                    if current is seen:  # else rebuilt or patched during the read, which may be older
                        self._install(user_id, UserIndex(user_id, rows, self.weights, previous=seen))
            else:
                added = listed - seen.position.keys()
                removed = seen.position.keys() - listed
                if added or removed:
                    # applied to whatever the index is by now: these ids' states are as fresh as any
                    self._patch(user_id, seen, self._read_ids(user_id, added), set(removed))
            with self._lock:
                self._checked[user_id] = started
        except Exception:  # the current index keeps serving; the next search past the age tries again
            logger.warning("background refresh of the search index of %s failed", user_id, exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(user_id)

    def _list_ids(self, user_id: str) -> set[str] | None:
        """The ids of the user's memories, without their payloads (None: the store cannot do that)."""
        store = self.memory.vector_store
        name = type(store).__name__
        if name == "ChromaDB" and getattr(store, "collection", None) is not None:
            return {str(i) for i in store.collection.get(where={"user_id": user_id}, include=[]).get("ids") or []}
        if name == "Qdrant" and getattr(store, "client", None) is not None and not self._embedded:
            from qdrant_client import models

            only_user = models.Filter(
                must=[models.FieldCondition(key="user_id", match=models.MatchValue(value=user_id))]
            )
            ids: set[str] = set()
            offset = None
            while True:
                points, offset = store.client.scroll(
                    collection_name=store.collection_name,
                    scroll_filter=only_user,
                    limit=10_000,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                )
                ids.update(str(point.id) for point in points)
                if offset is None:
                    return ids
        return None

    def _user_lock(self, user_id: str) -> threading.Lock:
        with self._lock:
            lock = self._user_locks.get(user_id)
            if lock is None:
                if len(self._user_locks) > 2 * _MAX_CACHED_USERS:
                    self._user_locks = {u: lk for u, lk in self._user_locks.items() if lk.locked()}
                lock = self._user_locks[user_id] = threading.Lock()
            return lock

    def _read_user(self, user_id: str) -> list[tuple[str, dict[str, Any]]]:
        from shared.memory_service import _rows

        listed = _rows(self.memory.vector_store.list(filters={"user_id": user_id}, top_k=_SCAN_LIMIT))
        rows = []
        for row in listed:
            payload = dict(row.payload or {})
            if _belongs(payload, user_id):  # never trust a store filter alone
                payload.pop("text_lemmatized", None)  # a copy of the text (without spaCy): not kept twice
                rows.append((str(row.id), payload))
        return rows

    def _read_ids(self, user_id: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {i: payload for i, payload in self._fetch(list(ids)).items() if _belongs(payload, user_id)}

    # --- search ------------------------------------------------------------------------------
    def search(
        self, user_id: str, query: str, limit: int, filters: SearchFilters | None, threshold: float | None
    ) -> list[MemoryRecord]:
        """The user's memories best matching `query`, best first, scores in [0, 1]."""
        if self.mode == "dense":
            dense, _ = self._dense_hits(user_id, query, limit, filters)
            return self._dense_only(dense, limit, filters, threshold)
        # The index first: it gives the keyword candidates, whose re-read from the store can then
        # run while the query is embedded and the store searched.
        index = self.index_for(user_id)
        parsed = Query.parse(query)
        lexical: tuple[np.ndarray, bool] | None = lexical_scores(index, parsed, self.weights)
        prefetch = self._prefetch(index, lexical[0] if lexical else None, limit)
        dense, exhaustive = self._dense_hits(user_id, query, limit, filters)

        news = {i: payload for i, (_, payload) in dense.items() if index.version_of(i) != _version(payload)}
        if news:
            # Another worker wrote: take what the store just said and, if it added memories, look
            # for the rest of what it added in the background.
            added = any(i not in index.position for i in news)
            index = self._patch(user_id, index, news, set())
            lexical = None  # positions moved
            if added:
                with self._lock:
                    self._refresh_in_background(user_id)
        known = [i for i in dense if i in index.position]
        positions = np.array([index.position[i] for i in known], dtype=np.int64)
        similarities = np.array([dense[i][0] for i in known], dtype=np.float64)
        scores = rank(index, parsed, positions, similarities, exhaustive, self.weights, lexical)
        return self._select(index, scores, dense, limit, filters, threshold, prefetch)

    def _dense_hits(
        self, user_id: str, query: str, limit: int, filters: SearchFilters | None
    ) -> tuple[dict[str, tuple[float, dict[str, Any]]], bool]:
        """The store's nearest memories as {id: (cosine, payload)}, and whether that is all of them.

        It asks for as many as mem0's own search does, so the store call costs the same.
        """
        store_filters: dict[str, Any] = {"user_id": user_id}
        if filters is not None:
            store_filters.update(filters.to_store_filters())
        pool_size = max(4 * limit, MIN_DENSE_POOL)
        vector = self.embedder.embed(query, "search")
        hits = self.memory.vector_store.search(query=query, vectors=vector, top_k=pool_size, filters=store_filters)
        dense: dict[str, tuple[float, dict[str, Any]]] = {}
        for hit in hits:
            payload = dict(hit.payload or {})
            if _belongs(payload, user_id) and hit.score is not None:  # never trust a store filter alone
                dense[str(hit.id)] = (self._similarity(float(hit.score)), payload)
        return dense, len(hits) < pool_size

    def _prefetch(self, index: UserIndex, lexical: np.ndarray | None, limit: int) -> _Prefetch | None:
        """Starts re-reading the memories most likely to be returned without being dense hits.

        Those are the best keyword (and boost) matches and the memories next to them. On a store
        reached over the network, reading them alongside the dense search hides the round trip;
        the few results it misses (about 2% of queries on LoCoMo) are read after ranking.
        """
        if not self._parallel_reads or lexical is None or index.size == 0:
            return None
        best = [int(p) for p in _best_first(lexical, 2 * limit) if lexical[p] > 0]
        if not best:
            return None
        wanted = set(best)
        for position in best:
            wanted.update(int(n) for n in (index.previous[position], index.next[position]) if n >= 0)
        ids = frozenset(index.ids[p] for p in wanted)
        return _Prefetch(ids, self._executor.submit(self._read_ids, index.user_id, ids))

    def _dense_only(
        self,
        dense: Mapping[str, tuple[float, dict[str, Any]]],
        limit: int,
        filters: SearchFilters | None,
        threshold: float | None,
    ) -> list[MemoryRecord]:
        """SEARCH_MODE=dense: the store's ranking, scored by cosine similarity."""
        from shared.memory_service import record_from_payload

        records = []
        for memory_id, (similarity, payload) in sorted(dense.items(), key=lambda item: -item[1][0]):
            score = round(min(max(similarity, 0.0), 1.0), 6)
            if threshold is not None and score < threshold:
                break
            if payload_matches(payload, filters):
                records.append(record_from_payload(memory_id, payload, score))
            if len(records) == limit:
                break
        return records

    def _select(
        self,
        index: UserIndex,
        scores: np.ndarray,
        dense: Mapping[str, tuple[float, dict[str, Any]]],
        limit: int,
        filters: SearchFilters | None,
        threshold: float | None,
        prefetch: _Prefetch | None = None,
    ) -> list[MemoryRecord]:
        """The best `limit` memories passing the filters and threshold, each as the store has it now.

        Dense hits come with the payload the store just returned. Memories found through the index
        alone are re-read in one call per round: one another worker deleted is skipped, one it
        rewrote is returned as it is now (ranked as it was), and the index learns both.
        """
        from shared.memory_service import record_from_payload

        order = _best_first(scores, 4 * limit + 64)
        chosen: list[tuple[str, float, dict[str, Any]]] = []
        upserts: dict[str, dict[str, Any]] = {}
        removed: set[str] = set()
        cursor = 0
        while len(chosen) < limit and cursor < len(scores):
            if cursor >= len(order):
                order = _best_first(scores, len(scores))  # the filters rejected the first candidates
            wanted: list[tuple[str, float, dict[str, Any] | None]] = []
            while len(chosen) + len(wanted) < limit and cursor < len(order):
                position = int(order[cursor])
                cursor += 1
                score = round(min(float(scores[position]), 1.0), 6)  # as returned, so as compared
                if threshold is not None and score < threshold:
                    cursor = len(scores)  # best first: nothing further passes either
                    break
                memory_id = index.ids[position]
                known = dense[memory_id][1] if memory_id in dense else None
                if payload_matches(known if known is not None else index.payloads[position], filters):
                    wanted.append((memory_id, score, known))
            unread = [memory_id for memory_id, _, known in wanted if known is None]
            fresh: dict[str, dict[str, Any]] = {}
            if unread and prefetch is not None:
                fresh = prefetch.future.result()
                unread = [memory_id for memory_id in unread if memory_id not in prefetch.ids]
            if unread:
                fresh = {**fresh, **self._read_ids(index.user_id, unread)}
            for memory_id, score, known in wanted:
                current = known if known is not None else fresh.get(memory_id)
                if current is None:
                    removed.add(memory_id)
                    continue
                if known is None and _version(current) != index.versions[index.position[memory_id]]:
                    upserts[memory_id] = current
                if payload_matches(current, filters):
                    chosen.append((memory_id, score, current))
        if upserts or removed:
            self._patch(index.user_id, index, upserts, removed)
        return [record_from_payload(memory_id, payload, score) for memory_id, score, payload in chosen]

    def _fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Current payloads of `ids`, in one store call where the adapter's client allows it."""
        store = self.memory.vector_store
        found: dict[str, dict[str, Any]] = {}
        if not ids:
            return found
        client = getattr(store, "client", None)
        collection = getattr(store, "collection", None)
        if type(store).__name__ == "Qdrant" and client is not None and not self._embedded:
            for point in client.retrieve(collection_name=store.collection_name, ids=list(ids), with_payload=True):
                found[str(point.id)] = dict(point.payload or {})
        elif type(store).__name__ == "ChromaDB" and collection is not None:
            got = collection.get(ids=list(ids), include=["metadatas"])
            for memory_id, payload in zip(got.get("ids") or [], got.get("metadatas") or [], strict=False):
                found[str(memory_id)] = dict(payload or {})
        else:
            for memory_id in ids:
                point = store.get(vector_id=memory_id)
                if point is not None:
                    found[str(point.id)] = dict(point.payload or {})
        return found


@dataclass(frozen=True)
class _Prefetch:
    ids: frozenset[str]
    future: Future[dict[str, dict[str, Any]]]


def _is_embedded(store: Any) -> bool:
    """Qdrant in local mode (shared/embedded_store.py wraps it): one process, no concurrent calls.

    Its client must only be reached through the adapter, which serialises calls.
    """
    if type(store).__name__ == "EmbeddedQdrantStore":
        return True
    client = getattr(store, "client", None)
    return type(getattr(client, "_client", None)).__name__ == "QdrantLocal"


def _belongs(payload: Mapping[str, Any], user_id: str) -> bool:
    return payload.get("user_id") == user_id and bool(payload.get("data"))


def _best_first(scores: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` highest scores, best first (ties in index order)."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, count - 1)[:count]
    return top[np.lexsort((top, -scores[top]))]


def _similarity_function(store: Any) -> Callable[[float], float]:
    """Turns the store adapter's score into cosine similarity.

    mem0's Qdrant adapter returns cosine similarity. Its Chroma adapter returns 1 / (1 + distance)
    in the collection's space: squared L2 by default (for unit vectors, cos = 1 - d / 2), or
    cosine / inner-product distance (cos = 1 - d).
    """
    if type(store).__name__ != "ChromaDB":
        return lambda score: score
    space = "l2"
    try:
        metadata = getattr(store.collection, "metadata", None) or {}
        space = str(metadata.get("hnsw:space") or "")
        if not space:
            configuration = getattr(store.collection, "configuration", None) or {}
            hnsw = configuration.get("hnsw") if isinstance(configuration, Mapping) else None
            space = str((hnsw or {}).get("space") or "l2")
    except Exception:  # an unknown client version: assume Chroma's default space
        logger.debug("could not read the Chroma collection's distance space; assuming l2", exc_info=True)
        space = "l2"

    def from_chroma(score: float) -> float:
        if score <= 0:
            return 0.0
        distance = 1.0 / score - 1.0
        return 1.0 - distance / 2.0 if space == "l2" else 1.0 - distance

    return from_chroma
