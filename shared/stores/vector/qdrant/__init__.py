"""The Qdrant server adapter (Qdrant Cloud, or the Container Apps option in `infra/`); Qdrant 1.19.0 or later.

Why this module exists: on a server the hybrid query belongs in the engine. One
`query_batch_points` round trip asks for the user's dense nearest memories, their BM25 keyword
matches and the memories of the months and speakers the query names, with the cosine and the BM25
of every one of them and the keyword ceiling, all filtered by the user (a tenant index) and the
search filters; a search's context neighbours are one more. A search costs the same whether or not
this worker has seen the user, and the worker never reads a user's memories to rank them.

Collection layout (created when missing, idempotently; two workers racing is fine):

- one unnamed dense vector of `dims`, cosine (the layout mem0's own Qdrant adapter makes);
- one named sparse vector `data_bm25` with the IDF modifier: BM25 over the memory text
  (`keywords.py`). The worker computes each memory's term weights on every write with
  `qdrant_edge.Bm25` (Multilingual tokenizer, so Chinese and Japanese are segmented; lowercase;
  English Snowball stemming; English stop words and the embedded engine's extra ones: the analysis
  of the embedded engine's text index) and the query's words at search time; the engine applies
  the idf, computed over the user's own memories (`SearchParams(idf=IdfCorpusParams(corpus=...))`,
  new in Qdrant 1.19.0, the minimum version, checked at start). A server has no full-text query
  (`TextQuery` is not in 1.19), hence the sparse vector;
- collection metadata `memory_layout`, set with the layout. A collection without it (made by an
  earlier version: no sparse vector, or a migration that did not finish) is refused at start with
  a message naming `python -m tools.ops.migrate_store`, which adds the vector in place (`migrate.py`);
- payload indexes: `user_id` keyword with `is_tenant` (the server stores each user's points
  together), `_seq` integer (lookup for neighbours, range for `order_by`), `_ts` float
  (created_after/before), `category` keyword, and the others of `schema.payload_indexes`. Only
  `user_id` builds filter-aware HNSW links: the others never narrow a dense search on their own,
  and per-value graphs for `_seq` (one block per write position across all users) would only cost
  indexing time.

Write order: `insert` numbers each user's new memories after the highest `_seq` that user has (one
`scroll` ordered by `_seq` descending), holding a per-user lock in this process around "read the
maximum + write". Two processes writing for the same user at the same instant can give two memories
the same `_seq`; that is accepted (a neighbour lookup then returns both), because a cross-process
lock would cost a round trip per write and the only effect is one extra neighbour candidate.
`update` writes with `update_mode=update_only`, so a rewrite racing a delete never brings the
memory back.

Tested against qdrant-client's local mode (`tests/integration/test_store_contract.py` and
`test_store_qdrant.py`, every call the adapter makes, including the per-user idf corpus, the prefetch
rescoring and `update_only`), and against a Qdrant 1.19.0 server when QDRANT_TEST_URL is set (the same
tests, and tests/integration/test_search.py). What only a server does: payload indexes (local mode accepts
and ignores them, and evaluates every filter by scanning payloads), `is_tenant`, the HNSW
settings, index-backed `order_by` on `_seq`, and the version check (local mode has no server
version).
"""

from __future__ import annotations

from shared.stores.vector.qdrant.client import load_qdrant_client

load_qdrant_client()  # before the modules below import it: without fastembed (client.py)

from shared.stores.vector.qdrant.store import QdrantServerStore  # noqa: E402

__all__ = ["QdrantServerStore"]
