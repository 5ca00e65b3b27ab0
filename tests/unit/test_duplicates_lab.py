"""`python -m tools.lab.duplicates`'s arithmetic on made-up cosines (the measurement itself needs the
model and LoCoMo: docs/duplicates.md has its figures)."""

from __future__ import annotations

import json
from pathlib import Path

from tools.lab.duplicates import PAIRS, choose, report


def _pair(lang: str, duplicate: bool, cosine: float, a: str = "a", b: str = "b") -> dict:
    return {"lang": lang, "duplicate": duplicate, "a": a, "b": b, "cosine": cosine}


def test_the_threshold_is_the_lowest_step_above_what_must_stay_apart() -> None:
    assert choose([0.9788, 0.9856]) == 0.99 and choose([0.99]) == 0.995 and choose([0.9991]) == 1.0
    assert choose([]) == 0.005


def test_the_report_leaves_out_what_the_check_never_judges() -> None:
    pairs = [
        _pair("en", True, 0.995),
        _pair("en", False, 0.97),
        _pair("en", False, 0.999, "moved in 2019", "moved in 2021"),  # other numbers: never merged
        _pair("zh", False, 1.0, "我有两只猫", "我有两只狗"),  # the model is blind to Chinese
        _pair("zh", True, 0.999),
    ]
    corpus = {"turns": 3, "repeated": 0, "gold_repeated": 0, "nearest": [(0.98, "x", "y"), (0.5, "y", "x")]}
    result = report(pairs, corpus, "m")
    assert result["threshold"] == 0.985 and result["cjk"] is False
    assert (
        result["languages"]["en"]["caught_at_threshold"] == 1 and result["languages"]["zh"]["caught_at_threshold"] == 0
    )
    row = next(r for r in result["grid"] if r["threshold"] == 0.98)
    assert row["labelled_distinct_merged"] == 0 and row["locomo_turns_merged"] == 1


def test_the_labelled_set_is_balanced() -> None:
    pairs = json.loads(Path(PAIRS).read_text(encoding="utf-8"))["pairs"]
    for lang in ("en", "zh"):
        mine = [p for p in pairs if p["lang"] == lang]
        assert len(mine) >= 60 and 0.4 < sum(p["duplicate"] for p in mine) / len(mine) < 0.6
    assert len({(p["a"], p["b"]) for p in pairs}) == len(pairs)
