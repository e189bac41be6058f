"""Hybrid retrieval: fuse BM25 and dense rankings.

- "linear" (DPR paper, §5.1): take the top-n candidates of each retriever, and rerank their union by
  BM25(q, p) + λ · sim(q, p). The paper used λ = 1.1 with unnormalised BERT inner products (~80);
  with L2-normalised embeddings sim is a cosine in [-1, 1], so λ must be much larger to matter.
- "rrf" (reciprocal-rank fusion, Cormack et al. 2009): score(p) = Σ_r 1 / (c + rank_r(p)), c = 60;
  scale-free, so it needs no tuning when the score ranges of the two retrievers differ.
"""

from __future__ import annotations

import numpy as np

from ..config_checks import check_float, check_int
from ..errors import ConfigError
from .base import SearchHit, check_queries
from .bm25 import BM25Retriever
from .dense import DenseRetriever

FUSIONS = ("linear", "rrf")
# λ for all-MiniLM-L6-v2 cosines against BM25 (k1=0.9, b=0.4) scores: best of {1.1, 5, 10, 20, 40} on 400
# fanoutqa and 400 NQ-open dev questions over the default corpus (top-20 accuracy).
DEFAULT_WEIGHT = 40.0


class HybridRetriever:
    name = "hybrid"

    def __init__(
        self,
        bm25: BM25Retriever,
        dense: DenseRetriever,
        fusion: str = "linear",
        weight: float = DEFAULT_WEIGHT,
        candidates: int = 100,
        rrf_c: int = 60,
    ):
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        check_float("weight", weight, ge=0, le=1e6)  # nan would make every fused score nan
        check_int("candidates", candidates, 1, 100_000)
        check_int("rrf_c", rrf_c, 0, 1_000_000)
        if [p.id for p in bm25.passages] != [p.id for p in dense.passages]:
            raise ConfigError("BM25 and dense retrievers must index the same corpus")
        self.bm25, self.dense, self.passages = bm25, dense, dense.passages
        self.fusion, self.weight, self.candidates, self.rrf_c = fusion, weight, candidates, rrf_c

    def search(self, queries: list[str], k: int = 10) -> list[list[SearchHit]]:
        queries = check_queries(queries, k)
        n = max(self.candidates, k)
        query_vectors = self.dense.encode(queries)
        dense_scores, dense_ids = self.dense.index.search(query_vectors, n)
        results = []
        for qi, query in enumerate(queries):
            bm25_all = self.bm25.scores(query)  # once per query: it ranks BM25's candidates and scores the union
            sparse_rank = {int(i): r for r, i in enumerate(self.bm25.ranked(bm25_all, n), start=1)}
            dense_rank = {int(i): r for r, i in enumerate(dense_ids[qi], start=1) if i >= 0}
            union = list(dict.fromkeys([*sparse_rank, *dense_rank]))
            if self.fusion == "rrf":
                fused = np.array(
                    [sum(1.0 / (self.rrf_c + ranks[i]) for ranks in (sparse_rank, dense_rank) if i in ranks) for i in union]
                )
            else:
                sim = dict(zip(dense_ids[qi].tolist(), dense_scores[qi].tolist(), strict=True))
                missing = [i for i in union if i not in sim]
                sim.update(zip(missing, self.dense.scores_for(query_vectors[qi : qi + 1], [missing])[0].tolist(), strict=True))
                fused = np.array([bm25_all[i] + self.weight * sim[i] for i in union])
            # Stable sort: ties keep BM25's order, then dense's.
            order = np.argsort(-fused, kind="stable")[:k]
            results.append([SearchHit(self.passages[union[j]], float(fused[j]), r) for r, j in enumerate(order, start=1)])
        return results
