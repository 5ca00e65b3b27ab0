"""Where a worker's cold start goes, step by step, in a fresh interpreter.

    python -m tools.bench.coldstart PARENT_WALL_CLOCK   (prints one JSON object)

Run by the load benchmark with the same environment as its dev host (and a fresh data folder), so
"first search served N s after start" can be split into: interpreter start, `import function_app`,
the settings, the vector store client, building the memory service (store opened), loading the
embedder, and the first search itself, in the order the worker's first search takes them; then
building mem0, which only a worker's first write, chat turn or history read waits for.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    started_wall = float(argv[0]) if argv else time.time()
    steps: dict[str, float] = {"interpreter start": time.time() - started_wall}
    last = time.perf_counter()

    def mark(step: str) -> None:
        nonlocal last
        now = time.perf_counter()
        steps[step] = now - last
        last = now

    import function_app  # noqa: F401  (the import being measured)

    mark("import function_app")
    from shared.settings import get_settings

    settings = get_settings()
    mark("read settings")
    if settings.vector_store == "chroma":
        import chromadb  # noqa: F401
    elif settings.qdrant_url:
        import qdrant_client  # noqa: F401
    else:
        import qdrant_edge  # noqa: F401
    mark("import vector store client")
    from shared import runtime

    service = runtime.get_memory_service()
    mark("build memory service (store opened)")
    service.embedder.embed("hello")
    mark("load the embedder + first embedding")
    service.search_memories("bench-coldstart", "hello", 1)
    mark("first search")
    # What the first search no longer waits for: mem0, built on the first write.
    service.engine.load()  # mem0 imported and assembled: the build being measured
    mark("build mem0 (first write only)")
    result = {name: round(seconds, 3) for name, seconds in steps.items()}
    result["total"] = round(sum(v for k, v in steps.items() if "first write" not in k), 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
