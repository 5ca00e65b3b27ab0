"""Hybrid search (shared/search/) without a store: text analysis and the ranking of engine candidates.

The search through the real store engines is in tests/integration/test_search.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.query.text import memory_month, memory_speaker, parse_month, query_months, tokenize
from shared.search.hybrid import (
    CONTEXT_WINDOW_SECONDS,
    DEFAULT_WEIGHTS,
    Query,
    add_context,
    own_scores,
)
from shared.stores.vector.port import SEQ_KEY, TS_KEY, Candidate


# --- text analysis ------------------------------------------------------------------------------
def test_tokenize_drops_stop_words_stems_and_strips_possessives() -> None:
    assert tokenize("When did Caroline's friends go to the LGBTQ support-group?") == [
        "carolin",
        "friend",
        "go",
        "lgbtq",
        "support",
        "group",
    ]
    assert tokenize("I don't know") == ["know"]
    assert tokenize("painting paintings painted") == ["paint", "paint", "paint"]


def test_tokenize_indexes_cjk_as_bigrams_next_to_latin_words() -> None:
    assert tokenize("用户偏好使用Python") == ["用户", "户偏", "偏好", "好使", "使用", "python"]
    assert tokenize("我") == ["我"]
    # the query shares the bigram 偏好 (preference) with the memory above
    assert "偏好" in tokenize("编程语言偏好")


@pytest.mark.parametrize(
    ("query", "months"),
    [
        ("When did Melanie go camping in July?", [(None, 7)]),
        ("What did she do in May 2023?", [(2023, 5)]),
        ("May I ask what happened in 2022?", [(2022, None)]),  # "May I" is not the month
        ("We met on 5 Aug", [(None, 8)]),
        ("I met Jan at the park", []),  # "Jan" alone is a name
        ("what changed since 2024-03-02", [(2024, 3)]),
        ("2023年5月去了哪里", [(2023, 5)]),
        ("nothing about time", []),
    ],
)
def test_query_months(query: str, months: list[tuple[int | None, int | None]]) -> None:
    assert query_months(query) == months


def test_memory_month_prefers_the_memory_date_over_creation() -> None:
    assert parse_month("1:56 pm on 8 May, 2023") == (2023, 5)
    assert parse_month("2023年5月3日") == (2023, 5)
    assert parse_month(1_700_000_000) == (2023, 11)
    payload = {"session_date": "8 May, 2023", "created_at": "2026-01-02T03:04:05+00:00"}
    assert memory_month(payload) == (2023, 5)
    assert memory_month({"created_at": "2026-01-02T03:04:05+00:00"}) == (2026, 1)
    assert memory_month({"date": "someday", "created_at": "2026-01-02T03:04:05+00:00"}) == (2026, 1)


def test_memory_speaker_from_metadata_or_a_transcript_prefix() -> None:
    assert memory_speaker({"data": "Caroline: I went to a support group"}) == "Caroline"
    assert memory_speaker({"data": "小明：我喜欢科幻电影"}) == "小明"
    assert memory_speaker({"data": "I like tea: green"}) is None
    assert memory_speaker({"data": "https://example.com"}) is None
    assert memory_speaker({"data": "likes tea", "speaker": "Ana"}) == "Ana"


# --- ranking the engine's candidates -------------------------------------------------------------
def _candidate(
    name: str, text: str, semantic: float = 0.0, keyword: float = 0.0, seq: int | None = None, **extra: Any
) -> Candidate:
    payload: dict[str, Any] = {"user_id": "u", "data": text, TS_KEY: 1_767_261_600.0, **extra}
    if seq is not None:
        payload[SEQ_KEY] = seq
    return Candidate(name, payload, semantic, keyword)


def test_keyword_evidence_is_relative_to_the_best_keyword_candidate() -> None:
    scored = own_scores(
        [_candidate("a", "x", 0.5, keyword=4.0), _candidate("b", "y", 0.5, keyword=2.0), _candidate("c", "z", 0.5)],
        Query.parse("anything"),
    )
    assert [s.own for s in scored] == pytest.approx([0.3 + 0.4, 0.3 + 0.2, 0.3])


def test_without_any_keyword_match_the_score_is_the_plain_similarity() -> None:
    scored = own_scores([_candidate("a", "x", 0.7), _candidate("b", "y", -0.2)], Query.parse("anything"))
    assert [s.own for s in scored] == pytest.approx([0.7, 0.0])


def test_speaker_and_date_boosts() -> None:
    ana = _candidate("a", "Ana: we went hiking", 0.5, session_date="3 July, 2023")
    ben = _candidate("b", "Ben: we went hiking", 0.5, session_date="9 May, 2023")
    plain = replace(DEFAULT_WEIGHTS, context=0, speaker=0, date=0)
    base = [s.own for s in own_scores([ana, ben], Query.parse("Where did Ben go hiking?"), plain)]
    boosted = [
        s.own for s in own_scores([ana, ben], Query.parse("Where did Ben go hiking?"), replace(plain, speaker=0.1))
    ]
    assert [b - a for a, b in zip(base, boosted, strict=True)] == pytest.approx([0, 0.1])
    query = Query.parse("Where did they go hiking in July 2023?")
    base = [s.own for s in own_scores([ana, ben], query, plain)]
    boosted = [s.own for s in own_scores([ana, ben], query, replace(plain, date=0.1))]
    assert [b - a for a, b in zip(base, boosted, strict=True)] == pytest.approx([0.1, 0])


def test_context_lifts_the_write_order_neighbours_of_a_strong_match() -> None:
    items = own_scores(
        [
            _candidate("q", "question", 0.9, seq=4),
            _candidate("a", "answer", 0.1, seq=5),
            _candidate("f", "far", 0.1, seq=9),
        ],
        Query.parse("question"),
    )
    add_context(items)
    score = {item.candidate.id: item.score for item in items}
    assert score["a"] == pytest.approx(0.1 + 0.3 * 0.9)
    assert score["f"] == pytest.approx(0.1)
    assert score["q"] == pytest.approx(0.9 + 0.3 * 0.1)


def test_neighbours_written_apart_or_without_an_order_lend_no_context() -> None:
    later = 1_767_261_600.0 + CONTEXT_WINDOW_SECONDS + 1
    items = own_scores(
        [
            _candidate("q", "question", 0.9, seq=4),
            _candidate("late", "written a day later", 0.1, seq=5, **{TS_KEY: later}),
            _candidate("none", "no order known", 0.1),
        ],
        Query.parse("question"),
    )
    add_context(items)
    assert [round(item.score, 6) for item in items[1:]] == [0.1, 0.1]
