"""The Chroma server adapter: mem0's vector store and the port's hybrid candidates, one collection per user.

Why one collection per user. Chroma 1.5's single-node server answers a `where` by collecting the
ids of every record the condition lets through (SQL over its metadata table), and a filtered
dense query hands that set to HNSW: a "this user's memories" filter costs in proportion to the
user's memories. Measured on this machine (2 cores shared, load ~5), a user-filtered dense query at
10,000 of 60,000 memories took a median 93 ms, the same query on that user's own collection 8 ms;
a filter that lets few records through costs ~3 ms. With one collection per user the dense side
is an unfiltered HNSW query of the user's own index, and counting and neighbour lookups touch only
the user's records.

Layout, all created in cosine space:

- `<collection>__u<32 hex digits of sha256(user_id)>`: the user's memories (vector, mem0's payload
  as metadata, the analysed text as document);
- `<collection>__catalog`: tiny records (a 1-dimension vector Chroma insists on) keyed
  `m:<memory id>` -> {user_id} (mem0 reads, updates and deletes by id alone) and
  `s:<sha256(user_id)>` -> {user_id, next} (the user's write-order counter). Its collection
  metadata records the embedding size, so another embedder is refused at start.

Keyword candidates. Single-node Chroma has no sparse index, so no BM25. A record's document is not
the raw text (that stays in the payload as mem0's `data`) but its analysed form ` term term `:
the distinct terms of `shared.query.text.tokenize` (casefolded Snowball stems without stop words, CJK
character bigrams) between single spaces. `$contains` is a case-sensitive `LIKE` substring test
(on raw text "python" misses "Python" and "art" hits "party"), and each `$contains` of an `$or`
is another pass (measured ~20 ms a term), so the query is one `$regex`, ` (?:t1|t2|...) `: exact
terms in one pass. Chroma returns matches unranked, in storage order (oldest first). A user with
at most `SMALL_USER * limit` memories gets every match from one scan. For a larger one the first
scan asks for memories holding at least two distinct query terms (a document's terms are
distinct, so two matches of the alternation are two terms), up to twice `limit`; only when it
finds fewer than `limit` does a second scan ask for any term. The best `limit` by matched share
are kept. On LoCoMo dev this pool held 0.877 of the evidence turns against 0.782 for the first
`limit` matches of any term (measured while the adapter was written). Each candidate's `keyword` is
the idf-weighted share of the query's terms its document holds (`keyword_ceiling` is 1).
After a change to the analyser, `reanalyse` rewrites the documents.

What still grows with the server's data: Chroma keeps one full-text table for all collections and
runs `$regex` over all of it before keeping the collection's rows (`sqlite_metadata.rs`), so a
keyword scan reads every memory on the server, not only the user's (~12-20 ms at 60,000 on this
machine, against ~2 ms for 1,300). Indexed alternative, not taken: the terms as a list metadata
value, matched with `{"_terms": {"$contains": t}}` through Chroma's metadata index, costs in
proportion to how many memories on the server hold the term (measured 2.4 ms for a rare term, 15
ms for one in a quarter of the memories), but "at least two of these terms" cannot be asked that
way, and ranking would need one query per term.

The single-node server answers one request at a time (three sent at once took as long as three in
a row), so running the dense query beside the first scan saves client time, not server time.

Write order (`_seq`). Chroma has no order-by, so "the user's highest `_seq`" is not one query; the
catalog's counter is read and moved forward by the number of new memories, then they are written.
In one process a per-user lock makes that exact. Two processes writing memories of the same user
at the same instant can read the same counter and give two memories one `_seq`: harmless for
ranking (a neighbour lookup then returns both), and rare. A missing counter (a lost catalog
record) is rebuilt from the user's stored `_seq` values once.

Chroma metadata values are str/int/float/bool or non-empty lists: None values and empty lists are
dropped on write. Chroma merges metadata on update, so keys a rewrite drops are sent as None
(which deletes them).

Other costs that grow: a search with filters that let many of the user's memories through (see
`_dense` and `_scan`), `list_user`. `count_user` is Chroma's collection count. Many users mean
many small HNSW indexes on the server, each loaded on first use.
"""

from shared.stores.vector.chroma.keywords import analysed, keyword_patterns, query_terms
from shared.stores.vector.chroma.store import ChromaVectorStore

__all__ = ["ChromaVectorStore", "analysed", "keyword_patterns", "query_terms"]
