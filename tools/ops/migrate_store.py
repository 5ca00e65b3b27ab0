"""Move memories written by earlier versions into this version's store layout.

    python -m tools.ops.migrate_store [--path QDRANT_PATH]      # the embedded store (default settings)
    VECTOR_STORE=chroma CHROMA_HOST=... python -m tools.ops.migrate_store   # a Chroma server
    LOCAL_EMBEDDING_MODEL=multilingual python -m tools.ops.migrate_store --reembed   # another embedding model
    QDRANT_URL=https://... python -m tools.ops.migrate_store    # a Qdrant server (COLLECTION_NAME)

The service refuses to start on either old layout, and on memories of another embedding model, and
names this command.

**Another embedding model (`--reembed`, embedded store).** Each shard records the model (and size)
that embedded its memories; after a change of LOCAL_EMBEDDING_MODEL, EMBEDDING_PROVIDER or
EMBEDDING_DIMS the service refuses the old vectors. `--reembed` embeds every memory's text again
with the configured model, into a fresh shard of the configured size (ids, payloads, times and
write order kept), records the model, and swaps it in; the old shard stays beside it as
`<collection>.before-reembed-<UTC time>` (delete it once satisfied; to go back, put it back and
configure the old model). Safe to interrupt. Run it with the service stopped. A server store
(Qdrant server, Chroma) is not re-embedded here: give the new model its own COLLECTION_NAME.

**Embedded store.** Versions before the store-engine change kept the zero-setup store with
qdrant-client's local mode under DATA_DIR/qdrant (a `meta.json` and one SQLite file per
collection). This version reads that folder with the Qdrant engine in process (Qdrant Edge),
which cannot read the old layout. The command:

1. reads every point of every collection (ids, vectors, payloads) with qdrant-client;
2. renames the old folder to `<folder>.local-mode-<UTC time>` (kept: delete it once satisfied);
3. writes each collection into a new shard at `<folder>/<collection>`, user by user in the order
   the memories were written (creation time, then the batch position `seq` the old store kept),
   so each memory gets its place in its user's write order (`_seq`) as new writes do.

Run it with the service stopped (the old store admits one process).

**Chroma.** Earlier versions kept every user's memories in one collection named COLLECTION_NAME
(mem0's own adapter); this version keeps a collection per user. The command copies each memory
into its user's collection, in creation order, and leaves the old collection as it was (delete it
once satisfied); a re-run skips what was moved. Workers may keep running: until the copy is done
they refuse to start, and the ones running still serve.

**Qdrant server.** Earlier versions searched the memory text with a full-text index; this version
keeps BM25 in a sparse vector (`data_bm25`) beside the dense one. The command adds that vector to
the collection COLLECTION_NAME in place and gives every memory its keyword weights, then marks the
collection with the new layout (shared/stores/vector/qdrant/migrate.py); nothing else is rewritten.
Stop the earlier version's workers first; a re-run finishes an interrupted run.

Memory ids, texts, metadata, creation times and vectors are kept; the history (a separate store)
is untouched.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.settings import Settings

PAGE = 1000


def read_old_store(root: Path) -> dict[str, tuple[int, list[tuple[str, list[float], dict[str, Any]]]]]:
    """{collection: (vector size, [(id, vector, payload), ...])} of a local-mode folder."""
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(root))
    try:
        found = {}
        for collection in client.get_collections().collections:
            name = collection.name
            info = client.get_collection(name)
            vectors_config: Any = info.config.params.vectors
            size = int(getattr(vectors_config, "size", 0) or 0)
            points: list[tuple[str, list[float], dict[str, Any]]] = []
            offset = None
            while True:
                page, offset = client.scroll(name, limit=PAGE, offset=offset, with_payload=True, with_vectors=True)
                for point in page:
                    vector: Any = point.vector
                    if isinstance(vector, dict):
                        vector = next(iter(vector.values()), None)
                    if vector is None:
                        continue
                    points.append((str(point.id), list(vector), dict(point.payload or {})))
                if offset is None:
                    break
            found[name] = (size, points)
        return found
    finally:
        client.close()


def _write_order(item: tuple[str, list[float], dict[str, Any]]) -> tuple[str, int, str]:
    payload = item[2]
    seq = payload.get("seq")
    return (str(payload.get("created_at") or ""), seq if isinstance(seq, int) else 0, item[0])


def migrate(root: Path) -> dict[str, int]:
    """Migrates `root` in place (the old folder is kept beside it); returns the points per collection."""
    from shared.stores.vector import is_old_embedded_store
    from shared.stores.vector.edge import EdgeVectorStore

    if not is_old_embedded_store(root):
        raise SystemExit(f"{root} is not a folder of the previous embedded store: nothing to migrate")
    collections = read_old_store(root)
    backup = root.with_name(f"{root.name}.local-mode-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}")
    root.rename(backup)
    root.mkdir(parents=True)
    counts = {}
    for name, (size, points) in collections.items():
        if name == "placeholder" or not size:
            continue
        store = EdgeVectorStore(root / name, name, size)
        try:
            by_user: dict[str, list[tuple[str, list[float], dict[str, Any]]]] = {}
            for point in points:
                by_user.setdefault(str(point[2].get("user_id") or ""), []).append(point)
            for user_points in by_user.values():
                user_points.sort(key=_write_order)
                for start in range(0, len(user_points), PAGE):
                    chunk = user_points[start : start + PAGE]
                    payloads = [{k: v for k, v in p.items() if k != "seq"} for _, _, p in chunk]
                    store.insert([v for _, v, _ in chunk], payloads, [i for i, _, _ in chunk])
            counts[name] = store.count_all()
        finally:
            store.close()
    print(f"moved {sum(counts.values())} memories into {root}; the old folder is {backup}", file=sys.stderr)
    return counts


def migrate_chroma() -> int:
    """Copies the single-collection Chroma layout into the per-user one; returns how many moved."""
    from shared.settings import get_settings
    from shared.stores.vector import chroma_client
    from shared.stores.vector.chroma import ChromaVectorStore

    settings = get_settings()
    store = ChromaVectorStore(
        chroma_client(settings), settings.collection_name, settings.resolved_embedding_dims, allow_legacy=True
    )
    moved = store.migrate()
    print(
        f"moved {moved} memories into the per-user collections of '{settings.collection_name}'; the old collection "
        f"'{settings.collection_name}' is left as it was: delete it once satisfied",
        file=sys.stderr,
    )
    return moved


def reembed(root: Path | None = None, settings: Settings | None = None) -> int:
    """Re-embeds the configured collection of the embedded store with the configured model; returns the count."""
    from shared.ai.backends import build_embedder
    from shared.settings import get_settings
    from shared.stores.vector.edge import EdgeVectorStore
    from shared.stores.vector.edge.compaction import reembed as rewrite
    from shared.stores.vector.edge.embedding import recorded, stored_dims

    settings = settings or get_settings()
    if settings.vector_store != "qdrant" or settings.qdrant_url:
        raise SystemExit(
            "--reembed rewrites the embedded store only: for a server store, give the new model its own "
            "COLLECTION_NAME (and add the memories again)"
        )
    name, dims, model = settings.collection_name, settings.resolved_embedding_dims, settings.embedding_model_id
    shard = (root if root is not None else settings.resolved_qdrant_path) / name
    old_dims = stored_dims(shard)
    if old_dims is None:
        raise SystemExit(f"no embedded store at {shard}: nothing to re-embed")
    found = recorded(shard) or {}
    embedder = build_embedder(settings)
    keep = shard.with_name(f"{shard.name}.before-reembed-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}")
    print(
        f"re-embedding {shard} ({found.get('model', 'model not recorded')}, {old_dims} dimensions) with {model} "
        f"({dims} dimensions)",
        file=sys.stderr,
    )

    def embed(texts: list[str]) -> list[list[float]]:
        return embedder.embed_batch(texts, "add")

    done = rewrite(
        shard,
        lambda folder: EdgeVectorStore(folder, name, old_dims),
        lambda folder: EdgeVectorStore(folder, name, dims),
        embed,
        model,
        keep,
    )
    print(f"re-embedded {done.points} memories into {shard}; the old shard is {keep}", file=sys.stderr)
    return done.points


def qdrant_server_client(settings: Any) -> Any:
    from qdrant_client import QdrantClient

    return QdrantClient(
        url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=int(settings.vector_store_timeout_seconds)
    )


def migrate_qdrant_server() -> int:
    """Brings the server's collection into the sparse-vector layout; returns how many memories got one."""
    from shared.settings import get_settings
    from shared.stores.vector.qdrant.migrate import upgrade_collection
    from shared.stores.vector.qdrant.schema import check_server_version, is_local

    settings = get_settings()
    client = qdrant_server_client(settings)
    try:
        if not is_local(client):
            check_server_version(client)
        moved = upgrade_collection(client, settings.collection_name, settings.resolved_embedding_dims)
    finally:
        client.close()
    print(
        f"'{settings.collection_name}': {moved} memories got their keyword vector; the collection is in the new layout",
        file=sys.stderr,
    )
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--path", type=Path, help="the embedded store folder (default: QDRANT_PATH, else DATA_DIR/qdrant)"
    )
    parser.add_argument(
        "--reembed", action="store_true", help="embed every memory again with the configured embedding model"
    )
    args = parser.parse_args(argv)
    from shared.settings import get_settings

    if args.reembed:
        print(f"{get_settings().collection_name}: {reembed(args.path)}")
        return 0
    if args.path is None and get_settings().vector_store == "chroma":
        migrate_chroma()
        return 0
    if args.path is None and get_settings().qdrant_url:
        migrate_qdrant_server()
        return 0
    root = args.path if args.path is not None else get_settings().resolved_qdrant_path
    for name, count in migrate(root).items():
        print(f"{name}: {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
