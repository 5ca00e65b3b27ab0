"""Text analysis shared by the search, the store adapters and their derived fields.

Words (Unicode, case-folded, English stop words dropped, Snowball-stemmed; runs of Chinese,
Japanese and Korean as character bigrams), the months and years a query or a memory names, and
who said a memory. No I/O and no model: pure functions over text and payloads.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

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
