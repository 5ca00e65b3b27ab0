"""Erasing what the embedded engine keeps of deleted memories: a rewrite of the shard.

Qdrant Edge keeps the bytes of deleted payloads in its write-ahead log and segment pages for as
long as the shard lives (measured: `python -m tools.lab.edge_erasure_probe`). `compact` ends that: it
copies the live points (vectors and payloads exactly as stored, derived fields included) into a
fresh shard beside the old one, and swaps the folders, so the deleted memories' texts are in no file
of the store afterwards. Run it with the service stopped (`python -m tools.ops.compact_store`): a shard
is one process's at a time, and a running service holds it.

The swap survives a crash at any point. The fresh shard is marked complete (`COMPACTED`) only after
it was written, flushed and closed; the old folder is renamed aside, the fresh one renamed into
place, and only then is the old one removed. `recover` (run by the store before it opens a shard)
finishes an interrupted swap or undoes an unfinished copy, so a store never starts empty beside a
complete copy of its data.
"""

from __future__ import annotations

import math
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
    The record of the embedding model (`embedding.py`) goes with the vectors.
    """
    return _rewrite(path, open_store, open_store, None, keep=None)


def reembed(
    path: Path,
    open_old: Callable[[Path], Any],
    open_new: Callable[[Path], Any],
    embed: Callable[[list[str]], list[list[float]]],
    model: str,
    keep: Path,
) -> Compaction:
    """Rewrites the shard at `path` with every point's text embedded again by `embed` (another model, maybe
    another size), payloads as stored, and `model` recorded; the old shard is kept at `keep`.

    `open_old(folder)` opens the shard as it is (its own vector size), `open_new(folder)` creates the
    fresh one at the new size. The swap is the compaction's: safe to interrupt at any point.
    """
    return _rewrite(path, open_old, open_new, (embed, model), keep=keep)


def _rewrite(
    path: Path,
    open_old: Callable[[Path], Any],
    open_new: Callable[[Path], Any],
    reembedding: tuple[Callable[[list[str]], list[list[float]]], str] | None,
    keep: Path | None,
) -> Compaction:
    from qdrant_edge import Point, ScrollRequest, UpdateOperation

    from shared.stores.vector.edge.embedding import MODEL_FILE, record
    from shared.stores.vector.port import TEXT_KEY

    path = Path(path)
    recover(path)
    if not (path / "edge_config.json").exists():
        raise FileNotFoundError(f"no Qdrant Edge shard at {path}")
    before = folder_bytes(path)
    old = open_old(path)  # refused while another process holds it
    fresh = fresh_path(path)
    copied = 0
    try:
        new = open_new(fresh)
        try:
            offset = None
            while True:
                points, offset = old.shard.scroll(
                    ScrollRequest(offset=offset, limit=PAGE, with_payload=True, with_vector=reembedding is None)
                )
                if points:
                    payloads = [dict(p.payload or {}) for p in points]
                    if reembedding is None:
                        vectors = [_dense(p.vector) for p in points]
                    else:
                        texts = [str(payload.get(TEXT_KEY) or "") for payload in payloads]
                        vectors = [_unit(v) for v in reembedding[0](texts)]
                    batch = [Point(str(p.id), v, pl) for p, v, pl in zip(points, vectors, payloads, strict=True)]
                    new.shard.update(UpdateOperation.upsert_points(batch))
                    copied += len(batch)
                if offset is None or not points:
                    break
            new.shard.optimize()
        finally:
            new.close()
        if reembedding is not None:
            record(fresh, reembedding[1], int(new.dims))
        elif (path / MODEL_FILE).exists():
            shutil.copy2(path / MODEL_FILE, fresh / MODEL_FILE)
    except BaseException:
        old.close()
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    old.close()
    (fresh / COMPLETE_MARKER).write_text(f"{copied}\n", encoding="utf-8")
    # The old folder is set aside (removed by `recover`), or kept where asked; either way the complete
    # fresh copy takes its place, and a crash in between is finished by `recover` on the next open.
    path.rename(keep if keep is not None else retired_path(path))
    fresh.rename(path)
    recover(path)  # removes the old folder (unless kept) and the marker
    return Compaction(points=copied, bytes_before=before, bytes_after=folder_bytes(path))


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


def _dense(vector: Any) -> list[float]:
    """The store's one unnamed dense vector, as scroll returns it."""
    if not isinstance(vector, list) or (vector and not isinstance(vector[0], int | float)):
        raise ValueError(f"expected one dense vector per point, got {type(vector).__name__}")
    return [float(x) for x in vector]
