"""Retrieval: the retriever protocol and every kind of search over a corpus.

- `base.py` — `SearchHit`, the `Retriever` protocol, query checks and limits;
- `bm25.py` — Lucene BM25 (bm25s, with rank_bm25 as the reference engine);
- `encoder.py` — `DualEncoder`: DPR's query and passage towers;
- `faiss_index.py` — `DenseIndex`: FAISS flat, fp16, HNSW or IVF-PQ;
- `dense.py`, `hybrid.py` — dense retrieval; BM25 + dense fusion (linear or RRF);
- `shards.py` — a big corpus encoded in slices, merged into one index;
- `searcher.py` — `Searcher`: builds, caches, saves and opens all of the above.
"""
