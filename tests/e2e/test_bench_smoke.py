"""Smoke runs of the benchmark tool (`python -m tools.bench`), as CI runs them: small, not for timing.

Each run is a subprocess that starts its own dev host, so these also prove the tool works from a
clean checkout. The scoring and parsing helpers are checked directly first, since a wrong recall
formula would otherwise only show up as a plausible-looking number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, local_model_path
from tools.bench.common import format_table, percentile
from tools.bench.locomo import parse_conversation, parse_evidence, ranked_sessions, session_recall, turn_recall
from tools.harness.chroma_server import ChromaServer

SMOKE_TIMEOUT = 180  # seconds; a smoke run takes ~25 s on a quiet 2-core machine

# A LoCoMo-shaped conversation where each answer turn shares obvious words with its question.
TINY_LOCOMO: list[dict[str, Any]] = [
    {
        "sample_id": "tiny-1",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bob",
            "session_1_date_time": "1:00 pm on 1 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "Hi Bob, how was your week?"},
                {"speaker": "Bob", "dia_id": "D1:2", "text": "I adopted a golden retriever puppy named Biscuit."},
                {"speaker": "Ann", "dia_id": "D1:3", "text": "Lovely! I started learning to play the cello."},
                {"speaker": "Bob", "dia_id": "D1:4", "text": "Look at this", "blip_caption": "a photo of a dog"},
                {"speaker": "Ann", "dia_id": "D1:5", "text": "The weather has been rainy all week here."},
                {"speaker": "Bob", "dia_id": "D1:6", "text": "My sister moved to a new flat downtown."},
            ],
            "session_2_date_time": "9:00 am on 8 May, 2023",
            "session_2": [
                {"speaker": "Ann", "dia_id": "D2:1", "text": "I am flying to Reykjavik for a volcano conference."},
                {"speaker": "Bob", "dia_id": "D2:2", "text": "My favourite food is spicy ramen with garlic."},
                {"speaker": "Ann", "dia_id": "D2:3", "text": "Work has been busy with quarterly reports."},
                {"speaker": "Bob", "dia_id": "D2:4", "text": "I bought new running shoes yesterday."},
                {"speaker": "Ann", "dia_id": "D2:5", "text": "Our team won the office quiz night."},
                {"speaker": "Bob", "dia_id": "D2:6", "text": "I repainted the kitchen a pale green."},
            ],
        },
        "qa": [
            {"question": "What is the name of Bob's puppy?", "answer": "Biscuit", "evidence": ["D1:2"], "category": 4},
            {"question": "Which instrument is Ann learning to play?", "answer": "cello", "evidence": ["D1:3"],
             "category": 1},
            {"question": "Where is Ann flying for the volcano conference?", "answer": "Reykjavik",
             "evidence": ["D2:1; D1:1"], "category": 2},
            {"question": "What is Bob's favourite food?", "answer": "ramen", "evidence": ["D2:2"], "category": 3},
            {"question": "Adversarial, never asked", "evidence": ["D1:2"], "category": 5},
            {"question": "Evidence that names no turn", "answer": "x", "evidence": ["D9:9"], "category": 4},
        ],
    }
]  # fmt: skip

LOCOMO_KEYS = {
    "questions", "turn_recall@5", "turn_recall@10", "session_recall@10", "per_category",
    "search_ms_p50", "search_ms_p95", "add_per_s",
}  # fmt: skip


def run_bench(args: list[str], tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "result.json"
    env = dict(os.environ, LOCAL_EMBEDDING_MODEL_PATH=str(local_model_path()), LOCAL_EMBEDDING_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench", *args, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"bench failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "results written to" in done.stdout
    return json.loads(out.read_text())


# --- the scoring, directly ---------------------------------------------------------------------
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


# --- the tool, as CI runs it -------------------------------------------------------------------
@pytest.mark.slow
def test_locomo_smoke_with_mem0_baseline(tmp_path: Path) -> None:
    data = tmp_path / "tiny_locomo.json"
    data.write_text(json.dumps(TINY_LOCOMO))
    result = run_bench(["locomo", "--data", str(data), "--baseline", "mem0"], tmp_path)

    assert result.keys() >= LOCOMO_KEYS
    assert result["questions"] == 4
    assert result["skipped_questions"] == 1
    assert result["memories"] == 12
    for system in (result, result["baseline"]):
        for key in ("turn_recall@5", "turn_recall@10", "session_recall@10"):
            assert 0.0 <= system[key] <= 1.0
        # The answer turns are lexically obvious, so a working search must find every one in its top 10.
        assert system["turn_recall@10"] == 1.0
        assert system["session_recall@10"] == 1.0
        assert set(system["per_category"]) == {"1", "2", "3", "4"}
        assert 0 < system["search_ms_p50"] <= system["search_ms_p95"]
        assert system["add_per_s"] > 0
    assert result["comparison"]["turn_recall@10_gain"] == 0.0
    assert result["worker_peak_rss_mb"] > 50


def _check_load(result: dict[str, Any], store: str) -> None:
    assert result["import_function_app"]["median_s"] > 0
    s = result["stores"][store]
    assert 0 < s["startup"]["listening_s"] <= s["startup"]["first_search_s"]
    assert s["cold_start_steps_s"]["total"] > 0
    assert s["single_add"]["count"] == 10
    assert s["batch_add"]["memories"] == 500  # 300 of other users + 200 of the measured one
    [row] = s["search"]
    assert (row["user_memories"], row["total_memories"]) == (200, 510)
    assert row["count"] == 10
    assert 0 < row["ms_p50"] <= row["ms_p95"]
    assert row["mean_results"] == 10  # the measured user has 200 memories: a search fills its limit
    cold = row["cold_user"]
    assert cold["restarts"] == 1 and cold["first_ms_p50"] > 0 and cold["warm_ms_p50"] > 0
    assert cold["first_over_warm"] > 0
    assert s["worker_peak_rss_mb"] > 50
    profile = s["profile"]
    assert profile["queries"] == 5 and profile["service_ms_p50"] > 0
    # plain mem0 runs its own adapter on the Chroma server; it has none for the embedded engine
    assert (profile.get("plain_mem0_ms_p50", 0) > 0) == (store == "chroma")
    assert profile["stages_ms_mean"]["embed query"] > 0
    assert profile["cprofile_top"]
    assert profile["batch_add"]["memories"] == 500 and profile["batch_add"]["stages_ms_per_batch"]["embed batch"] > 0
    if store == "chroma":
        assert profile["chroma_server_query_ms"]["user's collection, 50 results, metadatas+documents"]["ms_p50"] > 0
    targets = {(t["target"], t["store"]) for t in result["targets"]}
    assert ("worker peak RSS (MB)", store) in targets
    assert ("a user's first search on a fresh worker / a warm search, at 300 (ratio)", store) in targets


@pytest.mark.slow
def test_load_quick_embedded(tmp_path: Path) -> None:
    result = run_bench(["load", "--quick", "--store", "embedded"], tmp_path)
    assert set(result["stores"]) == {"embedded"}
    _check_load(result, "embedded")


@pytest.mark.slow
def test_load_quick_chroma(tmp_path: Path, chroma_server: ChromaServer) -> None:
    args = ["load", "--quick", "--store", "chroma", "--chroma-host", chroma_server.host]
    result = run_bench([*args, "--chroma-port", str(chroma_server.port)], tmp_path)
    assert set(result["stores"]) == {"chroma"}
    _check_load(result, "chroma")
