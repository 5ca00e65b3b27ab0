"""The scoring and parsing helpers of the benchmark tool (tools/bench), checked directly: a wrong recall
formula would otherwise only show up as a plausible-looking number in tests/e2e/test_bench_smoke.py."""

from __future__ import annotations

from tests.helpers import TINY_LOCOMO
from tools.bench.common import format_table, percentile
from tools.bench.locomo import parse_conversation, parse_evidence, ranked_sessions, session_recall, turn_recall


def test_evidence_may_hold_several_ids() -> None:
    assert parse_evidence(["D8:6; D9:17", "D1:2,D1:3 D1:4", "D1:2"]) == ["D8:6", "D9:17", "D1:2", "D1:3", "D1:4"]


def test_protocol_parsing_follows_the_issue() -> None:
    conversation = parse_conversation(TINY_LOCOMO[0], 0)
    assert len(conversation.turns) == 12
    photo = conversation.turns[3]
    assert photo.content == "Bob: Look at this [shares a photo of a dog]"
    assert photo.metadata == {"dia_id": "D1:4", "session": 1, "session_date": "1:00 pm on 1 May, 2023"}
    assert [q.category for q in conversation.questions] == [4, 1, 2, 3]  # 5 dropped, unknown evidence skipped
    assert conversation.skipped_questions == 1
    assert conversation.questions[2].gold == ("D2:1", "D1:1")
    assert conversation.questions[2].gold_sessions == frozenset({1, 2})


def test_recall_formulas() -> None:
    ranking = ["D1:1", None, "D2:3", "D1:2", "D3:1", "D1:9"]
    assert turn_recall(("D1:2", "D2:3"), ranking, 3) == 0.5
    assert turn_recall(("D1:2", "D2:3"), ranking, 10) == 1.0
    sessions = ranked_sessions(ranking, {"D1:1": 1, "D2:3": 2, "D1:2": 1, "D3:1": 3})
    assert sessions == [1, 2, 3]
    assert session_recall(frozenset({2, 4}), sessions, 10) == 0.5


def test_nearest_rank_percentile_and_table() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 95) == 95.0
    assert percentile([3.0], 95) == 3.0
    table = format_table(["name", "ms"], [["a", "1.5"], ["long name", "12.0"]])
    assert table.splitlines()[2] == "a           1.5"
