"""Erase what the embedded store keeps of deleted memories: rewrite its shard with the live points only.

    python -m tools.ops.compact_store            # the shard the settings name (DATA_DIR / QDRANT_PATH, COLLECTION_NAME)

Qdrant Edge keeps the bytes of deleted payloads in its WAL and segment pages for the shard's life
(`python -m tools.lab.edge_erasure_probe` measures it). After deleting users whose data must be gone
from disk, stop the service and run this: it copies every live memory into a fresh shard and swaps
it in (shared/stores/vector/edge/compaction.py; safe to interrupt). A server store (Qdrant server,
Chroma) has its own compaction and is not touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.ops.compact_store", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    from shared.errors import ServiceError
    from shared.settings import get_settings
    from shared.stores.vector.edge import EdgeVectorStore
    from shared.stores.vector.edge.compaction import compact

    settings = get_settings()
    if settings.vector_store != "qdrant" or settings.qdrant_url:
        print("the configured vector store is a server; only the embedded Qdrant Edge store is compacted here")
        return 2
    name, dims = settings.collection_name, settings.resolved_embedding_dims
    shard = settings.resolved_qdrant_path / name

    def open_store(folder: Path) -> EdgeVectorStore:
        return EdgeVectorStore(folder, name, dims)

    try:
        done = compact(shard, open_store)
    except (ServiceError, FileNotFoundError) as error:
        print(getattr(error, "message", str(error)), file=sys.stderr)
        return 1
    print(f"{shard}: {done.points} memories kept; {done.bytes_before:,} bytes before, {done.bytes_after:,} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
