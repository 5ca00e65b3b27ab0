"""`--baseline mem0`: the LoCoMo protocol on plain mem0, in the benchmark's own process.

Same embedder (our local ONNX MiniLM) and same store kind (embedded Qdrant in a fresh folder of
its own, without the service's store wrapper), through mem0's public calls only:
`Memory.add(text, infer=False)` one turn at a time (mem0 has no batch add for raw text) and
`Memory.search(question, top_k=10, filters={"user_id": ...})` with mem0's defaults (threshold
0.1). What it measures is what an application gets from mem0 alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.bench.inproc import build_plain_mem0, close_memory, settings_for
from tools.bench.locomo import Turn


class Mem0Backend:
    name = "mem0"

    def __init__(self, data_dir: Path) -> None:
        self.memory: Any = build_plain_mem0(settings_for(data_dir))
        # Load the model and open the store before anything is timed, as the dev host's start does.
        self.memory.search("warm up", top_k=1, filters={"user_id": "bench-probe"})

    def add_turns(self, user_id: str, turns: Sequence[Turn]) -> None:
        for turn in turns:
            self.memory.add(turn.content, user_id=user_id, metadata=turn.metadata, infer=False)

    def search(self, user_id: str, query: str, limit: int) -> list[str | None]:
        found = self.memory.search(query, top_k=limit, filters={"user_id": user_id})
        return [(item.get("metadata") or {}).get("dia_id") for item in found["results"]]

    def cpu_seconds(self) -> float | None:
        # mem0 runs in this process (ONNX threads included), and nothing else does while it is timed.
        return time.process_time()

    def close(self) -> None:
        close_memory(self.memory)
