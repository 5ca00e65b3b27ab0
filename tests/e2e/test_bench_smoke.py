"""Smoke runs of the benchmark tool (`python -m tools.bench`), as CI runs them: small, not for timing.

Each run is a subprocess that starts its own dev host, so these also prove the tool works from a
clean checkout. The scoring and parsing helpers are checked directly in
tests/unit/test_bench_scoring.py, since a wrong recall formula would otherwise only show up as a
plausible-looking number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, TINY_LOCOMO, DevHost, model_env
from tools.harness.chroma_server import ChromaServer

SMOKE_TIMEOUT = 180  # seconds; a smoke run takes ~25 s on a quiet 2-core machine

LOCOMO_KEYS = {
    "questions", "turn_recall@5", "turn_recall@10", "session_recall@10", "per_category",
    "search_ms_p50", "search_ms_p95", "add_per_s",
}  # fmt: skip


def run_bench(args: list[str], tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "result.json"
    env = dict(os.environ, **model_env(), LOCAL_EMBEDDING_THREADS="1")
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
    assert 50 < s["worker_pss_mb_at_end"] <= s["worker_peak_rss_mb"]
    mixed = s["mixed"]  # 80 % search / 20 % add under 1, 8 and 32 clients, on the same worker
    assert (mixed["users"], mixed["per_user"]) == (3, 20)
    assert [p["clients"] for p in mixed["phases"]] == [1, 8, 32]
    for phase in mixed["phases"]:
        assert phase["failures"] == 0 and phase["ops"] == phase["search"]["n"] + phase["add"]["n"] > 0
        assert phase["ops_per_s"] > 0 and phase["worker_cpu_ms_per_op"] > 0
    profile = s["profile"]
    assert profile["queries"] == 5 and profile["service_ms_p50"] > 0
    assert profile["http_restarted_worker_ms_p50"] == cold["warm_ms_p50"]
    assert "plain_mem0_ms_p50" not in profile  # mem0 reads neither store's layout (see tools/bench/load.py)
    assert profile["stages_ms_mean"]["embed query"] > 0
    assert profile["cprofile_top"]
    assert profile["batch_add"]["memories"] == 500 and profile["batch_add"]["stages_ms_per_batch"]["embed batch"] > 0
    if store == "chroma":
        assert profile["chroma_server_query_ms"]["user's collection, 50 results, metadatas+documents"]["ms_p50"] > 0
    targets = {(t["target"], t["store"]) for t in result["targets"]}
    assert ("worker peak RSS (MB)", store) in targets
    assert ("(HTTP p50 on a restarted worker - service p50) / service p50", store) in targets
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


@pytest.mark.slow
def test_ingest_smoke(tmp_path: Path) -> None:
    # Its own Azurite and dev hosts: the queue path end to end (202s drained, one and two hosts, chat).
    args = ["ingest", "--accepts", "5", "--events", "3", "--per-event", "2", "--chat-turns", "1"]
    result = run_bench([*args, "--llm-delay", "0.05"], tmp_path)
    assert result["accept_202"]["count"] == 5
    for drain in ("drain_one_host", "drain_two_hosts"):
        assert result[drain]["memories"] == 6 and result[drain]["memories_per_s"] > 0
    assert result["chat_inline"]["llm_calls_in_line"] == 3 and result["chat_queue"]["llm_calls_in_line"] == 1


def test_requestpath_smoke(tmp_path: Path, devhost: DevHost) -> None:
    result = run_bench(["requestpath", "--runs", "20", "--url", devhost.base_url], tmp_path)
    for name in ("memory_search", "memory_batch_add"):
        assert 0 < result["function_ms"][name]["p50"] <= result["function_ms"][name]["p95"]
    assert result["host_round_trip_ms"]["p50"] > 0


@pytest.mark.slow
def test_updates_smoke_against_the_scripted_model(tmp_path: Path) -> None:
    """`updates` against an OpenAI-compatible endpoint given by URL: the scripted model (the fake,
    answering the labels), which a correct service turns into exactly the labelled facts."""
    from tools.harness.fake_openai import FakeOpenAIServer
    from tools.harness.fake_openai.scripted import script_learning

    with FakeOpenAIServer() as server:
        server.expected_api_key = "sk-bench"
        script = script_learning(server)
        args = ["updates", "--base-url", server.base_url, "--model", "scripted-model", "--api-key", "sk-bench"]
        result = run_bench(args, tmp_path)
    assert result["scenarios"] >= 60 and result["model"] == "scripted-model"
    assert set(result["per_language"]) == {"en", "zh"}
    for figures in (
        result["overall"],
        *(f[k] for f in result["per_language"].values() for k in ("every_turn", "final")),
    ):
        assert (figures["precision"], figures["recall"], figures["duplicate_rate"]) == (1.0, 1.0, 0.0)
    assert result["learning_events"] > result["scenarios"] and result["misses"] == []
    assert script.extractions == result["learning_events"] and 0 < script.decisions < script.extractions
    assert {r.json.get("model") for r in server.chat_requests()} == {"scripted-model"}
