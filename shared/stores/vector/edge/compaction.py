"""Erasing what the embedded engine keeps of deleted memories: a rewrite of the shard.

Qdrant Edge keeps the bytes of deleted payloads in its write-ahead log and segment pages for as
long as the shard lives (measured: `python -m tools.edge_erasure_probe`). `compact` ends that: it
copies the live points (vectors and payloads exactly as stored, derived fields included) into a
fresh shard beside the old one, and swaps the folders, so the deleted memories' texts are in no file
of the store afterwards. Run it with the service stopped (`python -m tools.compact_store`): a shard
is one process's at a time, and a running service holds it.

The swap survives a crash at any point. The fresh shard is marked complete (`COMPACTED`) only after
it was written, flushed and closed; the old folder is renamed aside, the fresh one renamed into
place, and only then is the old one removed. `recover` (run by the store before it opens a shard)
finishes an interrupted swap or undoes an unfinished copy, so a store never starts empty beside a
complete copy of its data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = 1000
COMPLETE_MARKER = "COMPACTED"


@dataclass(frozen=True)
class Compaction:
    points: int
    bytes_before: int
    bytes_after: int


def fresh_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.compacting")


def retired_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.retired")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def recover(path: Path) -> None:
    """Finish or undo a compaction a crash interrupted, before the shard at `path` is opened."""
    fresh, retired = fresh_path(path), retired_path(path)
    complete = (fresh / COMPLETE_MARKER).exists()
    if not path.exists() and complete:
        fresh.rename(path)  # the old folder was already set aside: the complete copy takes its place
    elif not path.exists() and retired.exists():
        retired.rename(path)  # nothing complete to take its place: the old folder comes back
    if path.exists():
        if fresh.exists():
            shutil.rmtree(fresh)  # an unfinished copy (or one never swapped in): the original stands
        if retired.exists():
            shutil.rmtree(retired)  # swapped already: what is left of the old folder goes
        (path / COMPLETE_MARKER).unlink(missing_ok=True)


def compact(path: Path, open_store: Callable[[Path], Any]) -> Compaction:
    """Rewrites the shard at `path` with only its live points; returns what it copied and the sizes.

    `open_store(folder)` opens (or creates) an `EdgeVectorStore` there, with the service's
    configuration and payload indexes, so the fresh shard is laid out exactly as a new store would be.
    """
    from qdrant_edge import Point, ScrollRequest, UpdateOperation

    path = Path(path)
    recover(path)
    if not (path / "edge_config.json").exists():
        raise FileNotFoundError(f"no Qdrant Edge shard at {path}")
    before = folder_bytes(path)
    old = open_store(path)  # refused while another process holds it
    fresh = fresh_path(path)
    copied = 0
    try:
        new = open_store(fresh)
        try:
            offset = None
            while True:
                points, offset = old.shard.scroll(
                    ScrollRequest(offset=offset, limit=PAGE, with_payload=True, with_vector=True)
                )
                if points:
                    batch = [Point(str(p.id), _dense(p.vector), dict(p.payload or {})) for p in points]
                    new.shard.update(UpdateOperation.upsert_points(batch))
                    copied += len(batch)
                if offset is None or not points:
                    break
            new.shard.optimize()
        finally:
            new.close()
    except BaseException:
        old.close()
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    old.close()
    (fresh / COMPLETE_MARKER).write_text(f"{copied}\n", encoding="utf-8")
    path.rename(retired_path(path))
    fresh.rename(path)
    recover(path)  # removes the old folder and the marker
    return Compaction(points=copied, bytes_before=before, bytes_after=folder_bytes(path))


def _dense(vector: Any) -> list[float]:
    """The store's one unnamed dense vector, as scroll returns it."""
    if not isinstance(vector, list) or (vector and not isinstance(vector[0], int | float)):
        raise ValueError(f"expected one dense vector per point, got {type(vector).__name__}")
    return [float(x) for x in vector]
