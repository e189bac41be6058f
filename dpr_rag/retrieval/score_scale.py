"""How large a retriever's scores are: the temperature τ that turns them into a distribution softmax(score / τ).

Cosines of a normalised dense encoder lie in [-1, 1]; BM25 and hybrid scores are unbounded; reciprocal-rank fusion
differs by ~1e-3 between ranks; a cross-encoder trained with the listwise softmax already scores in nats. On 200 NQ
train questions the median gap between the top-1 and top-5 scores is 0.093 (dense cosine), 1.61 (BM25), 5.9 (linear
hybrid), so these τ give each about the same spread (~1.6-1.9 nats between first and fifth). RAG's p(z|x) uses them,
and so does reranking that adds the first stage's score to the cross-encoder's (`rerank.py`, fusion "sum").
"""

from __future__ import annotations

from .base import Retriever
from .dense import DenseRetriever
from .hybrid import HybridRetriever
from .run_file import RunFileRetriever

TEMPERATURES = {"dense": 0.05, "bm25": 1.0, "hybrid": 3.0, "hybrid-rrf": 0.001, "rerank": 1.0}


def score_temperature(retriever: Retriever) -> float:
    """τ suited to the retriever's scores (`TEMPERATURES`); 1 for an unnormalised dense encoder (inner products) and
    for a reranked retriever (its scores are a cross-encoder's logits, or already divided by the first stage's τ)."""
    if isinstance(retriever, RunFileRetriever):
        return retriever.temperature  # the τ of the retriever that made the run
    if retriever.name.endswith("+rerank"):
        return TEMPERATURES["rerank"]
    if isinstance(retriever, DenseRetriever):
        return TEMPERATURES["dense"] if retriever.encoder.settings.normalize else 1.0
    if isinstance(retriever, HybridRetriever) and retriever.fusion == "rrf":
        return TEMPERATURES["hybrid-rrf"]
    return TEMPERATURES.get(retriever.name, 1.0)
