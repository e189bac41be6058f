"""Dense retrieval: encode the question with E_Q, find the passages with the largest E_Q(q)·E_P(p)."""

from __future__ import annotations

import numpy as np

from ..data.passages import Passage
from ..errors import ConfigError
from .base import SearchHit, check_queries
from .encoder import DualEncoder
from .faiss_index import DenseIndex


def encode_corpus(
    encoder: DualEncoder,
    passages: list[Passage],
    kind: str = "flat",
    batch_size: int = 64,
    show_progress: bool = True,
    progress=None,
    precision: str = "auto",
    **index_params,
) -> DenseIndex:
    """Encode every passage with the passage tower and put the vectors in a new FAISS index (ids = positions)."""
    index = DenseIndex(encoder.dim, kind, **index_params)
    index.add(
        encoder.encode_passages(
            passages, batch_size=batch_size, show_progress=show_progress, progress=progress, precision=precision
        )
    )
    return index


class DenseRetriever:
    name = "dense"

    def __init__(self, encoder: DualEncoder, index: DenseIndex, passages: list[Passage]):
        if len(index) != len(passages):
            raise ConfigError(
                f"the index holds {len(index)} vectors but the corpus has {len(passages)} passages; rebuild the index"
            )
        self.encoder, self.index, self.passages = encoder, index, passages

    def encode(self, queries: list[str]) -> np.ndarray:
        return self.encoder.encode_queries(queries)

    def search(self, queries: list[str], k: int = 10) -> list[list[SearchHit]]:
        queries = check_queries(queries, k)
        scores, ids = self.index.search(self.encode(queries), k)
        return [
            [
                SearchHit(self.passages[i], float(s), r)
                for r, (s, i) in enumerate(((s, i) for s, i in zip(srow, irow, strict=True) if i >= 0), start=1)
            ]
            for srow, irow in zip(scores, ids, strict=True)
        ]

    def scores_for(self, query_vectors: np.ndarray, ids: list[list[int]]) -> list[np.ndarray]:
        """sim(q, p) for given passage positions, per query (the hybrid retriever rescores BM25's candidates)."""
        return [
            self.index.reconstruct(np.asarray(row, dtype=np.int64)) @ q if len(row) else np.zeros(0, np.float32)
            for q, row in zip(query_vectors, ids, strict=True)
        ]
