"""How long Qdrant Edge keeps the bytes of deleted payloads in its files, measured.

    python -m tools.lab.edge_erasure_probe [--deleted 50] [--ops 2000]

It builds a shard in a temporary folder with the service's configuration (Cached vectors and
payloads, WAL on), stores `--deleted` points whose payload holds a unique canary string beside filler
points, deletes them, and after each step prints how many times the canary's bytes still occur in
the shard's files and in which: after the delete, a flush, optimize(), `--ops` further single-point
writes (does the WAL roll over?) with a flush and optimize(), and a close and reload. It changes
nothing of the service; it is how the figure on the engine's erasure bound in docs/operations.md is made.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path


def _occurrences(root: Path, needle: bytes) -> tuple[int, dict[str, int]]:
    where: dict[str, int] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            count = path.read_bytes().count(needle)
            if count:
                where[str(path.relative_to(root))] = count
    return sum(where.values()), where


def main(argv: list[str] | None = None) -> int:
    from qdrant_edge import Distance, EdgeConfig, EdgeShard, EdgeVectorParams, Memory, Point, UpdateOperation

    parser = argparse.ArgumentParser(prog="python -m tools.lab.edge_erasure_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--deleted", type=int, default=50, help="points holding the canary, then deleted")
    parser.add_argument("--ops", type=int, default=2000, help="single-point writes after the delete")
    parser.add_argument("--dims", type=int, default=384)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    canary = f"CANARY-{uuid.uuid4().hex}"
    needle = canary.encode()

    def vector() -> list[float]:
        return [rng.uniform(-1, 1) for _ in range(args.dims)]

    config = EdgeConfig(
        vectors=EdgeVectorParams(size=args.dims, distance=Distance.Cosine, memory=Memory.Cached),
        payload_memory=Memory.Cached,
    )
    with tempfile.TemporaryDirectory(prefix="edge-erasure-") as tmp:
        root = Path(tmp) / "shard"
        root.mkdir()
        shard = EdgeShard.create(str(root), config)
        doomed: list[int | uuid.UUID | str] = [str(uuid.uuid4()) for _ in range(args.deleted)]
        points = [
            Point(pid, vector(), {"data": f"{canary} secret {i}", "user_id": "erased"}) for i, pid in enumerate(doomed)
        ]
        points += [Point(str(uuid.uuid4()), vector(), {"data": f"filler {i}", "user_id": "kept"}) for i in range(200)]
        shard.update(UpdateOperation.upsert_points(points))
        shard.flush()
        rows: list[tuple[str, int, dict[str, int], float]] = []

        def measure(step: str, started: float) -> None:
            total, where = _occurrences(root, needle)
            rows.append((step, total, where, time.perf_counter() - started))

        measure("stored and flushed", time.perf_counter())
        started = time.perf_counter()
        shard.update(UpdateOperation.delete_points(doomed))
        measure("deleted", started)
        started = time.perf_counter()
        shard.flush()
        measure("flush()", started)
        started = time.perf_counter()
        shard.optimize()
        measure("optimize()", started)
        started = time.perf_counter()
        for i in range(args.ops):
            shard.update(UpdateOperation.upsert_points([Point(str(uuid.uuid4()), vector(), {"data": f"later {i}"})]))
        shard.flush()
        shard.optimize()
        measure(f"{args.ops} more writes, flush(), optimize()", started)
        started = time.perf_counter()
        shard.close()
        shard = EdgeShard.load(str(root), config)
        shard.optimize()
        shard.flush()
        measure("close(), load(), optimize(), flush()", started)
        shard.close()
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

    print(f"canary {canary}: {args.deleted} points deleted among 200 kept; shard {size / 1e6:.1f} MB at the end")
    print(f"{'step':<45} {'canary copies':>13} {'seconds':>8}  files holding it")
    for step, total, where, seconds in rows:
        files = ", ".join(f"{name} ({count})" for name, count in where.items()) or "-"
        print(f"{step:<45} {total:>13} {seconds:>8.2f}  {files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
