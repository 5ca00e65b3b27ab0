"""Qdrant Edge: the Qdrant engine inside the worker process, the zero-setup default.

The same engine as a Qdrant server (HNSW, payload indexes, BM25 over a full-text index, prefetch
and fusion), linked in as a library with its data in one folder (a WAL and segments on disk).
Everything that grows with a user's data runs in the engine: the user's points are found through a
tenant index on `user_id`, keyword matches through a BM25-scored text index on the memory text
(the Multilingual tokenizer segments Chinese and Japanese into words; English is stemmed and its
stop words dropped), neighbours in write order through an integer index on `_seq`.

One process owns a shard folder at a time (the engine locks its WAL): a second process is refused
with a message naming the folder. Calls from many threads of the owning process are safe.
"""

from __future__ import annotations

from shared.stores.vector.edge.analysis import text_index_params
from shared.stores.vector.edge.store import EdgeVectorStore

__all__ = ["EdgeVectorStore", "text_index_params"]
