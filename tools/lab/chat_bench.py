"""Chat latency budget: what one chat turn costs us, with the LLM's own time taken out.

    python -m tools.lab.chat_bench [--turns 50] [--memories 1000] [--out chat.json]

Starts the fake OpenAI server of the test suite (answers in about a millisecond) and a dev host
on the zero-setup stores pointed at it, seeds the user with memories, then times chat turns
through HTTP. Each turn makes two LLM calls (the answer, and mem0's fact extraction); the fake
server reports how long it spent on each, so our overhead is turn time minus LLM time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from shared.observability.percentiles import percentile

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--memories", type=int, default=1000, help="memories seeded for the user first")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from tools.harness.fake_openai import FakeOpenAIServer
    from tools.harness.models import model_env
    from tools.harness.ports import ServerProcess, free_port, http_status

    model = model_env()
    with FakeOpenAIServer() as llm, tempfile.TemporaryDirectory() as tmp:
        llm.when(
            match=lambda r: bool(r.get("response_format")),
            reply=lambda r: {"facts": [f"fact {time.time_ns()}"]},
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "VECTOR_", "LLM_"))}
        env.update(
            DATA_DIR=tmp,
            LLM_PROVIDER="openai",
            OPENAI_BASE_URL=llm.base_url,
            OPENAI_API_KEY="bench",
            LOG_LEVEL="WARNING",
            **model,
        )
        host = ServerProcess(
            "devhost",
            [sys.executable, "-m", "tools.devhost", "--port", str(port)],
            ready=lambda: http_status(f"{base}/health") == 200,
            log_path=Path(tmp) / "devhost.log",
            env=env,
            cwd=REPO,
            start_timeout=90,
        )
        host.start()
        try:
            client = httpx.Client(base_url=base, timeout=60)
            user = "bench-user"
            for start in range(0, args.memories, 100):
                batch = [
                    {"content": f"memory {i}: the user mentioned topic {i % 37} and item {i % 11}"}
                    for i in range(start, min(start + 100, args.memories))
                ]
                client.post("/api/memory/batch-add", json={"user_id": user, "memories": batch}).raise_for_status()
            client.post("/api/chat/message", json={"user_id": user, "message": "warm up"}).raise_for_status()
            llm.reset()
            llm.when(
                match=lambda r: bool(r.get("response_format")),
                reply=lambda r: {"facts": [f"fact {time.time_ns()}"]},
            )
            totals: list[float] = []
            for turn in range(args.turns):
                started = time.perf_counter()
                response = client.post(
                    "/api/chat/message",
                    json={
                        "user_id": user,
                        "message": f"turn {turn}: tell me about topic {turn % 37}",
                        "session_id": "s",
                    },
                )
                response.raise_for_status()
                totals.append((time.perf_counter() - started) * 1000)
            llm_ms = [r.duration_ms for r in llm.chat_requests() if r.duration_ms is not None]
        finally:
            host.stop()

    llm_per_turn = sum(ms for ms in llm_ms if ms is not None) / args.turns
    result: dict[str, Any] = {
        "turns": args.turns,
        "seeded_memories": args.memories,
        "turn_ms_p50": round(percentile(totals, 50), 1),
        "turn_ms_p95": round(percentile(totals, 95), 1),
        "llm_ms_per_turn_mean": round(llm_per_turn, 1),
        "overhead_ms_p50": round(percentile(totals, 50) - llm_per_turn, 1),
        "overhead_ms_p95": round(percentile(totals, 95) - llm_per_turn, 1),
        "turn_ms_mean": round(statistics.fmean(totals), 1),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
