"""The Qdrant server adapter (Qdrant Cloud, or the Container Apps option in `infra/`).

Why this module exists: on a server the hybrid query belongs in the engine. One
`query_batch_points` round trip asks for the user's dense nearest memories and their BM25 keyword
matches over the memory text, both filtered by the user (a tenant index) and the search filters, so
a search costs the same whether or not this worker has seen the user. The worker never reads a
user's memories to rank them.

Collection layout (created when missing, idempotently; two workers racing is fine):

- one unnamed dense vector of `dims`, cosine (the layout mem0's own Qdrant adapter makes, so an
  existing mem0 collection is readable; its extra sparse `bm25` slot is ignored);
- payload indexes: `user_id` keyword with `is_tenant` (the server stores each user's points
  together), `data` full text (Multilingual tokenizer, lowercase, English Snowball stemmer, English
  stop words, BM25 scoring), `_seq` integer (lookup for neighbours, range for `order_by`), `_ts`
  float (created_after/before), `category` keyword. Only `user_id` builds filter-aware HNSW links:
  the others never narrow a dense search on their own, and per-value graphs for `_seq` (one block
  per write position across all users) would only cost indexing time.

Write order: `insert` numbers each user's new memories after the highest `_seq` that user has (one
`scroll` ordered by `_seq` descending), holding a per-user lock in this process around "read the
maximum + write". Two processes writing for the same user at the same instant can give two memories
the same `_seq`; that is accepted (a neighbour lookup then returns both), because a cross-process
lock would cost a round trip per write and the only effect is one extra neighbour candidate.

Tested against qdrant-client's local mode (`tests/integration/test_store_qdrant.py`). Verified ONLY against a
real server, never here (no server runs on this machine):

- the full-text index as configured above. Local mode refuses text queries on any index but the
  default word tokenizer (NotImplementedError), so on a local-mode client this adapter creates the
  `data` index with the default tokenizer (word, lowercase, no stemmer, no stop words, BM25) and
  the query is otherwise identical. Stemming, stop-word removal and Chinese segmentation therefore
  happen only on a server. The same index parameters were checked on Qdrant Edge 0.9 (the server's
  engine in process), not on a server: `编程语言偏好` finds `用户偏好使用Python进行数据分析` (through
  偏好), `like dog` finds `She likes hiking with her dogs`, `the and with` finds nothing. Local
  mode's word tokenizer keeps a run of CJK characters and Latin letters as ONE token, so
  `用户偏好使用Python进行数据分析` is never a keyword match there, not even for `python`;
- BM25 figures: both compute IDF over the whole collection (the default `idf` scope; a server could
  narrow it to the user with `SearchParams(idf=IdfCorpusParams(...))`, which local mode refuses, so
  it is not used), but local mode's scores come from its own tokenizer and Python BM25 and can
  differ from a server's;
- payload indexes (keyword/tenant, integer, float): local mode accepts and ignores them, and
  evaluates every filter by scanning payloads. `is_tenant`, the HNSW settings and index-backed
  `order_by` on `_seq` are server behaviour only (local mode sorts payloads for `order_by`);
- a server replacing an index whose parameters changed, and the 409 on a racing collection create.
"""

from __future__ import annotations

from shared.stores.vector.qdrant.schema import text_index_params
from shared.stores.vector.qdrant.store import QdrantServerStore

__all__ = ["QdrantServerStore", "text_index_params"]
