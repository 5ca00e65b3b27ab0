"""The zh/en retrieval set (tests/data/zh_en_retrieval.json) on the default and the multilingual local
models, through the memory service's own search: the figures in docs/embeddings.md."""

from __future__ import annotations

import pytest

from tools.bench.zhen import run_zhen

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scores() -> dict:
    return run_zhen(["int8", "multilingual"])["models"]


def test_the_multilingual_model_answers_across_languages(scores: dict) -> None:
    dense, hybrid = scores["multilingual"]["dense"], scores["multilingual"]["hybrid"]
    assert dense["top1"] >= 0.85 and dense["recall@5"] >= 0.95
    for pair in ("zh->en", "en->zh"):
        assert dense["by_pair"][pair]["top1"] >= 0.8, pair
    assert hybrid["recall@5"] >= 0.95
    assert hybrid["by_pair"]["zh->zh"]["top1"] == hybrid["by_pair"]["en->en"]["top1"] == 1.0


def test_the_default_model_answers_within_a_language_only(scores: dict) -> None:
    for mode in ("hybrid", "dense"):
        result = scores["int8"][mode]
        assert result["by_pair"]["zh->zh"]["recall@5"] == result["by_pair"]["en->en"]["recall@5"] == 1.0
        cross = result["by_pair"]["zh->en"]["top1"] + result["by_pair"]["en->zh"]["top1"]
        ml = scores["multilingual"][mode]["by_pair"]
        assert ml["zh->en"]["top1"] + ml["en->zh"]["top1"] > cross + 0.8, mode
